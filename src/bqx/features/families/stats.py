"""Statistics of one-bar log returns (5 features, not lagged)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, stats_kernel
from bqx.features._ops import (
    corr_at,
    rolling_mean,
    rolling_sum,
    safe_div,
    shift,
    std_at,
)
from bqx.features.context import Ctx, Family, Spec

SPECS = (
    Spec("ret_skew_240", "stats", "skewness of 240 one-bar log returns", 240),
    Spec("ret_kurt_240", "stats", "excess kurtosis of 240 one-bar log returns", 240),
    Spec("ret_autocorr1_60", "stats", "lag-1 autocorrelation of returns over 60 bars", 61),
    Spec(
        "variance_ratio_240",
        "stats",
        "mean(5-bar return²) / (5 mean(1-bar return²)) over 240 bars",
        245,
    ),
    Spec("rvol_60", "stats", "std of 60 one-bar log returns (per bar)", 60),
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    r = ctx.r
    out = np.empty((len(pos), 5))
    # skewness and excess kurtosis from raw moments of returns (returns are ~zero-mean and
    # small, so raw moments lose nothing)
    w = 240
    m1 = rolling_mean(r, w)
    m2r, m3r, m4r = rolling_mean(r**2, w), rolling_mean(r**3, w), rolling_mean(r**4, w)
    c2 = m2r - m1**2
    c3 = m3r - 3 * m1 * m2r + 2 * m1**3
    c4 = m4r - 4 * m1 * m3r + 6 * m1**2 * m2r - 3 * m1**4
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 0] = np.where(c2 > 0, c3 / c2**1.5, np.nan)[pos]
        out[:, 1] = np.where(c2 > 0, c4 / (c2 * c2) - 3.0, np.nan)[pos]
    out[:, 2] = corr_at(r, shift(r, 1), 60, pos)
    r5 = ctx.lc - shift(ctx.lc, 5)
    num = rolling_sum(r5 * r5, w)
    den = 5.0 * rolling_sum(r * r, w)
    out[:, 3] = safe_div(num, den)[pos]
    out[:, 4] = std_at(r, 60, pos)
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """One compiled call (:func:`bqx.features._kern_small.stats_kernel`): the moments,
    autocorrelation, variance ratio and volatility of the returns in each row's window
    (numpy's pairwise sums; powers by libm)."""
    blk, a0 = ctx.block()
    return stats_kernel(blk, a0, pos, as_idx(idx))


FAMILY = Family("stats", False, SPECS, compute, compute_online=compute_online)
