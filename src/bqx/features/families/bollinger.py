"""Bollinger bands (5 features, not lagged): 2 standard deviations around an SMA of close."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, bollinger_kernel
from bqx.features._ops import (
    rolling_mean,
    rolling_min,
    rolling_std,
    safe_div,
)
from bqx.features.context import Ctx, Family, Spec

SPECS = (
    Spec("bb_pctb_20", "bollinger", "%B = (close - lower) / (upper - lower), 20 bars, 2 sd", 19),
    Spec("bb_width_20", "bollinger", "(upper - lower) / middle, 20 bars", 19),
    Spec("bb_pctb_50", "bollinger", "%B, 50 bars", 49),
    Spec("bb_width_50", "bollinger", "(upper - lower) / middle, 50 bars", 49),
    Spec("bb_squeeze_20", "bollinger", "bb_width_20 / its minimum over 120 bars", 138),
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    c = ctx.c
    cols = []
    w20 = None
    for w in (20, 50):
        mid = rolling_mean(c, w)
        sd = rolling_std(c, w)
        cols.append(safe_div(c - (mid - 2 * sd), 4 * sd))
        width = safe_div(4 * sd, mid)
        cols.append(width)
        if w == 20:
            w20 = width
    assert w20 is not None
    cols.append(safe_div(w20, rolling_min(w20, 120)))
    return np.stack([x[pos] for x in cols], axis=1)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """One compiled call (:func:`bqx.features._kern_small.bollinger_kernel`): each band
    from the mean and standard deviation of its window (numpy's pairwise sums)."""
    blk, a0 = ctx.block()
    return bollinger_kernel(blk, a0, pos, as_idx(idx))


FAMILY = Family("bollinger", False, SPECS, compute, compute_online=compute_online)
