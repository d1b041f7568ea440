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

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, fib_kernel
from bqx.features._ops import (
    bars_since_max,
    bars_since_min,
    rolling_max,
    rolling_min,
    safe_div,
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


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """One compiled call (:func:`bqx.features._kern_small.fib_kernel`): :func:`compute`'s
    expressions on the window of each row (+, -, *, / and comparisons only: the batch
    values bit for bit)."""
    blk, a0 = ctx.block()
    return fib_kernel(blk, a0, pos, as_idx(idx), LEVELS)


FAMILY = Family("fibonacci", False, SPECS, compute, compute_online=compute_online)
