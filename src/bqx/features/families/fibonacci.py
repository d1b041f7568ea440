"""Fibonacci retracements of rolling swings (12 features, not lagged).

For swing windows w in 120 and 480 bars: H = highest high, L = lowest low, R = H - L.

* ``fib_pos_w``      (close - L) / R, position inside the swing
* ``fib_d382_w``     (close - (L + 0.382 R)) / close
* ``fib_d618_w``     (close - (L + 0.618 R)) / close
* ``fib_nearest_w``  signed distance (in units of R) to the nearest level of 23.6/38.2/50/61.8/78.6 %
* ``fib_zone_w``     index 0..5 of the zone between consecutive levels
* ``fib_dir_w``      +1 when the swing high is more recent than the swing low (an up-swing), else -1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bqx.features._ops import (
    bars_since_max,
    bars_since_min,
    rolling_max,
    rolling_min,
    safe_div,
    windows_at,
)
from bqx.features.context import Ctx, Family, Spec

WINDOWS = (120, 480)
LEVELS = np.array([0.236, 0.382, 0.5, 0.618, 0.786])
_D = {
    "pos": "(close - L) / (H - L)",
    "d382": "(close - (L + 0.382 (H - L))) / close",
    "d618": "(close - (L + 0.618 (H - L))) / close",
    "nearest": "signed distance to the nearest Fibonacci level, in swing ranges",
    "zone": "zone index 0..5 between Fibonacci levels",
    "dir": "+1 if the swing high is more recent than the swing low, else -1",
}
SPECS = tuple(
    Spec(f"fib_{k}_{w}", "fibonacci", f"{d}, swing over {w} bars", w - 1)
    for w in WINDOWS
    for k, d in _D.items()
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    c = ctx.c[pos]
    out = np.empty((len(pos), len(SPECS)))
    k = 0
    for w in WINDOWS:
        hi = rolling_max(ctx.h, w)[pos]
        lo = rolling_min(ctx.l, w)[pos]
        rng = hi - lo
        p = safe_div(c - lo, rng)
        out[:, k] = p
        out[:, k + 1] = safe_div(c - (lo + 0.382 * rng), c)
        out[:, k + 2] = safe_div(c - (lo + 0.618 * rng), c)
        dist = p[:, None] - LEVELS[None, :]
        idx = np.argmin(np.abs(dist), axis=1)
        near = dist[np.arange(len(pos)), idx]
        near[np.isnan(p)] = np.nan
        out[:, k + 3] = near
        zone = np.searchsorted(LEVELS, p, side="right").astype(float)
        zone[np.isnan(p)] = np.nan
        out[:, k + 4] = zone
        since_h = bars_since_max(ctx.h, w)[pos]
        since_l = bars_since_min(ctx.l, w)[pos]
        d = np.where(since_h < since_l, 1.0, -1.0)
        d[np.isnan(since_h) | np.isnan(since_l)] = np.nan
        out[:, k + 5] = d
        k += 6
    return out


def _swing_pt(ctx: Ctx, pos: np.ndarray, w: int, ks: frozenset[int]) -> dict[int, np.ndarray]:
    """The features ``ks`` (0..5) of swing window ``w`` at the few rows ``pos``: each with the
    expression of :func:`compute` on the gathered windows (elementwise per row), so only the
    asked ones and what they read are computed."""
    c = ctx.c[pos]
    hw, lw = windows_at(ctx.h, w, pos), windows_at(ctx.l, w, pos)
    out: dict[int, np.ndarray] = {}
    if ks & {0, 1, 2, 3, 4}:
        hi, lo = np.maximum.reduce(hw, 1), np.minimum.reduce(lw, 1)  # hw.max(axis=1), ...
        rng = hi - lo
        p = safe_div(c - lo, rng)
        out[0] = p
        if 1 in ks:
            out[1] = safe_div(c - (lo + 0.382 * rng), c)
        if 2 in ks:
            out[2] = safe_div(c - (lo + 0.618 * rng), c)
        if 3 in ks:
            dist = p[:, None] - LEVELS[None, :]
            near = dist[np.arange(len(pos)), np.argmin(np.abs(dist), axis=1)]
            near[np.isnan(p)] = np.nan
            out[3] = near
        if 4 in ks:
            zone = np.searchsorted(LEVELS, p, side="right").astype(float)
            zone[np.isnan(p)] = np.nan
            out[4] = zone
    if 5 in ks:
        # bars since the most recent high / low: argmax of the newest-first window
        since_h = np.argmax(hw[:, ::-1], axis=1).astype(float)
        since_l = np.argmin(lw[:, ::-1], axis=1).astype(float)
        d = np.where(since_h < since_l, 1.0, -1.0)
        d[~(np.isfinite(hw).all(axis=1) & np.isfinite(lw).all(axis=1))] = np.nan
        out[5] = d
    return out


_LEVELS = [float(v) for v in LEVELS]
_NAN = float("nan")


def _sdiv(a: float, b: float) -> float:
    """:func:`safe_div` of two floats: IEEE division as numpy's, NaN where it is not finite
    (numpy's x/0 is inf or NaN: NaN here)."""
    if b == 0.0:
        return _NAN
    r = a / b
    return r if math.isfinite(r) else _NAN


def _swing_one(ctx: Ctx, q: int, w: int, ks: frozenset[int]) -> dict[int, Any]:
    """:func:`_swing_pt` at one row with a full window (the online call of this non-lagged
    family): the same expressions on Python floats, whose +, -, *, / and comparisons are
    numpy's float64 ones (IEEE double, correctly rounded), instead of numpy calls on
    one-element arrays; max, min and the arg-max stay numpy reductions (exact)."""
    c = float(ctx.c[q])
    hw, lw = ctx.h[q - w + 1 : q + 1], ctx.l[q - w + 1 : q + 1]  # views: only reduced
    out: dict[int, Any] = {}
    if ks & {0, 1, 2, 3, 4}:
        hi, lo = float(np.maximum.reduce(hw)), float(np.minimum.reduce(lw))
        rng = hi - lo
        p = _sdiv(c - lo, rng)
        out[0] = p
        if 1 in ks:
            out[1] = _sdiv(c - (lo + 0.382 * rng), c)
        if 2 in ks:
            out[2] = _sdiv(c - (lo + 0.618 * rng), c)
        if 3 in ks:
            # the first level with the smallest |p - level| (np.argmin), NaN with p
            dist = [p - v for v in _LEVELS]
            best = 0
            for i in range(1, len(dist)):
                if abs(dist[i]) < abs(dist[best]):
                    best = i
            out[3] = _NAN if math.isnan(p) else dist[best]
        if 4 in ks:
            # np.searchsorted(LEVELS, p, side="right"): the number of levels <= p
            out[4] = _NAN if math.isnan(p) else float(sum(v <= p for v in _LEVELS))
    if 5 in ks:
        vals = _swing_pt(ctx, np.array([q]), w, frozenset({5}))
        out[5] = vals[5]
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    out = np.empty((len(pos), len(idx)))
    for wi, w in enumerate(WINDOWS):
        ks = frozenset(k % 6 for k in idx if k // 6 == wi)
        if not ks:
            continue
        if len(pos) == 1 and pos[0] >= w - 1:
            vals = _swing_one(ctx, int(pos[0]), w, ks)
        else:
            vals = _swing_pt(ctx, pos, w, ks)
        for j, k in enumerate(idx):
            if k // 6 == wi:
                out[:, j] = vals[k % 6]
    return out


FAMILY = Family("fibonacci", False, SPECS, compute, compute_online=compute_online)
