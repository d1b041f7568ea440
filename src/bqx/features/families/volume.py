"""Volume (10 features, not lagged), on tick volume. NaN when the source has no volume."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._ops import (
    corr_pt,
    mean_pt,
    rolling_corr,
    rolling_mean,
    rolling_std,
    rolling_sum,
    safe_div,
    std_pt,
    sum_pt,
)
from bqx.features.context import Ctx, Family, Spec
from bqx.features.families.technical import _tp

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


def _vol_pt(k: int, ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    v, c = ctx.v, ctx.c
    if k == 0:
        return np.log1p(v[pos])
    if k in (1, 2, 3):
        return safe_div(v[pos], mean_pt(v, (15, 60, 240)[k - 1], pos))
    if k == 4:
        return safe_div(v[pos] - mean_pt(v, 60, pos), std_pt(v, 60, pos))
    if k == 5:
        return safe_div(mean_pt(v, 15, pos), mean_pt(v, 240, pos))
    if k == 6:
        sv = ctx.series("sign_r_v", lambda c: np.sign(c.r) * c.v)
        return safe_div(sum_pt(sv, 60, pos), sum_pt(v, 60, pos))
    if k in (7, 8):
        w = 60 if k == 7 else 240
        tpv = ctx.series("tp_v", lambda c: _tp(c) * c.v)
        vwap = safe_div(sum_pt(tpv, w, pos), sum_pt(v, w, pos))
        return safe_div(c[pos] - vwap, c[pos])
    return corr_pt(ctx.series("abs_r", _abs_r), v, 60, pos)


def _abs_r(ctx: Ctx) -> np.ndarray:
    return np.abs(ctx.r)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    out = np.empty((len(pos), len(idx)))
    for j, k in enumerate(idx):
        out[:, j] = _vol_pt(k, ctx, pos)
    return out


FAMILY = Family("volume", False, SPECS, compute, compute_online=compute_online)
