"""Volume (10 features, not lagged), on tick volume. NaN when the source has no volume."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, volume_kernel
from bqx.features._ops import (
    rolling_corr,
    rolling_mean,
    rolling_std,
    rolling_sum,
    safe_div,
)
from bqx.features.context import Ctx, Family, Spec

_V = ("volume",)
SPECS = (
    Spec("vol_log", "volume", "ln(1 + volume)", 0, _V),
    Spec("vol_ratio_15", "volume", "volume / SMA15(volume)", 14, _V),
    Spec("vol_ratio_60", "volume", "volume / SMA60(volume)", 59, _V),
    Spec("vol_ratio_240", "volume", "volume / SMA240(volume)", 239, _V),
    Spec("vol_z_60", "volume", "(volume - mean60) / std60", 59, _V),
    Spec("vol_trend_15_240", "volume", "SMA15(volume) / SMA240(volume)", 239, _V),
    Spec("vol_signed_60", "volume", "sum(sign(return) * volume) / sum(volume), 60 bars", 60, _V),
    Spec("vwap_dev_60", "volume", "(close - VWAP60) / close, VWAP on typical price", 59, _V),
    Spec("vwap_dev_240", "volume", "(close - VWAP240) / close", 239, _V),
    Spec("vol_absret_corr_60", "volume", "corr(|return|, volume) over 60 bars", 60, _V),
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    v, c = ctx.v, ctx.c
    s15, s60, s240 = rolling_mean(v, 15), rolling_mean(v, 60), rolling_mean(v, 240)
    tp = (ctx.h + ctx.l + c) / 3.0
    cols = [
        np.log1p(v),
        safe_div(v, s15),
        safe_div(v, s60),
        safe_div(v, s240),
        safe_div(v - s60, rolling_std(v, 60)),
        safe_div(s15, s240),
        safe_div(rolling_sum(np.sign(ctx.r) * v, 60), rolling_sum(v, 60)),
    ]
    for w in (60, 240):
        vwap = safe_div(rolling_sum(tp * v, w), rolling_sum(v, w))
        cols.append(safe_div(c - vwap, c))
    # no global rescaling here: a statistic over the whole context would leak the future
    cols.append(rolling_corr(np.abs(ctx.r), v, 60))
    return np.stack([x[pos] for x in cols], axis=1)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """One compiled call (:func:`bqx.features._kern_small.volume_kernel`): each value with
    :func:`_vol_pt`'s arithmetic (numpy's pairwise window sums, libm's log1p)."""
    blk, a0 = ctx.block()
    return volume_kernel(blk, a0, pos, as_idx(idx))


FAMILY = Family("volume", False, SPECS, compute, compute_online=compute_online)
