"""Spread (20 features, not lagged): quoted spread level and dynamics, plus range-based
spread estimators that need only OHLC (Roll 1984, Corwin-Schultz 2012, Abdi-Ranaldo 2017).

The 14 quoted-spread features are NaN when the source has no spread; the 6 estimators are
always available. Estimators are in log-price units (≈ relative spread).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, spread_kernel
from bqx.features._ops import (
    ema_kernel,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    safe_div,
    shift,
)
from bqx.features.context import Ctx, Family, Spec
from bqx.features.families.technical import W14, atr

_S = ("spread",)
SPECS = (
    Spec("spread_pips", "spread", "spread in pips", 0, _S),
    Spec("spread_rel_bp", "spread", "spread / close in basis points", 0, _S),
    Spec("spread_ratio_15", "spread", "spread / SMA15(spread)", 14, _S),
    Spec("spread_ratio_60", "spread", "spread / SMA60(spread)", 59, _S),
    Spec("spread_ratio_240", "spread", "spread / SMA240(spread)", 239, _S),
    Spec("spread_z_60", "spread", "(spread - mean60) / std60", 59, _S),
    Spec("spread_z_240", "spread", "(spread - mean240) / std240", 239, _S),
    Spec("spread_max_ratio_60", "spread", "max60(spread) / SMA60(spread)", 59, _S),
    Spec("spread_cv_60", "spread", "std60(spread) / SMA60(spread)", 59, _S),
    Spec("spread_trend_15_240", "spread", "SMA15(spread) / SMA240(spread)", 239, _S),
    Spec("spread_to_atr_14", "spread", "spread / ATR(14)", W14 + 1, _S),
    Spec("spread_to_range", "spread", "spread / (high - low + spread)", 0, _S),
    Spec("spread_range_pos_240", "spread", "(spread - min240) / (max240 - min240)", 239, _S),
    Spec("spread_chg_60", "spread", "ln((spread + 0.1 pip) / (spread_{t-60} + 0.1 pip))", 60, _S),
    Spec("roll_spread_60", "spread", "Roll: 2 sqrt(max(0, -cov(r_t, r_{t-1}))), 60 bars", 61),
    Spec("roll_spread_240", "spread", "Roll estimator, 240 bars", 241),
    Spec(
        "cs_spread_60",
        "spread",
        "Corwin-Schultz high-low estimator, mean of 60 two-bar estimates",
        60,
    ),
    Spec("cs_spread_240", "spread", "Corwin-Schultz, 240 bars", 240),
    Spec(
        "ar_spread_60", "spread", "Abdi-Ranaldo close-high-low estimator (causal form), 60 bars", 60
    ),
    Spec("ar_spread_240", "spread", "Abdi-Ranaldo, 240 bars", 240),
)

_K = 3.0 - 2.0 * np.sqrt(2.0)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    s, c, h, lo = ctx.s, ctx.c, ctx.h, ctx.l
    m = len(pos)
    out = np.empty((m, 20))
    s15, s60, s240 = rolling_mean(s, 15), rolling_mean(s, 60), rolling_mean(s, 240)
    sd60, sd240 = rolling_std(s, 60), rolling_std(s, 240)
    cols = [
        s / ctx.pip,
        1e4 * safe_div(s, c),
        safe_div(s, s15),
        safe_div(s, s60),
        safe_div(s, s240),
        safe_div(s - s60, sd60),
        safe_div(s - s240, sd240),
        safe_div(rolling_max(s, 60), s60),
        safe_div(sd60, s60),
        safe_div(s15, s240),
        safe_div(s, atr(ctx, 14)),
        safe_div(s, h - lo + s),
    ]
    for k, x in enumerate(cols):
        out[:, k] = x[pos]
    smin = rolling_min(s, 240)
    out[:, 12] = safe_div(s - smin, rolling_max(s, 240) - smin)[pos]
    eps = 0.1 * ctx.pip
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 13] = np.log((s + eps) / (shift(s, 60) + eps))[pos]
    # Roll (1984)
    r, r1 = ctx.r, shift(ctx.r, 1)
    for k, w in enumerate((60, 240)):
        cov = rolling_mean(r * r1, w) - rolling_mean(r, w) * rolling_mean(r1, w)
        out[:, 14 + k] = (2.0 * np.sqrt(np.maximum(-cov, 0.0)) + 0.0 * cov)[pos]
    # Corwin-Schultz (2012), two-bar estimates, negative set to zero; Abdi-Ranaldo (2017),
    # causal form (bars t-1 and t only): the per-bar terms, shared with the point path
    cs, ar_term = _cs_ar(ctx)
    for k, w in enumerate((60, 240)):
        out[:, 16 + k] = rolling_mean(cs, w)[pos]
        mean_ar = rolling_mean(ar_term, w)
        out[:, 18 + k] = (np.sqrt(np.maximum(mean_ar, 0.0)) + 0.0 * mean_ar)[pos]
    return out


def _cs_ar(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    """The per-bar Corwin-Schultz and Abdi-Ranaldo terms (elementwise, as in ``compute``)."""
    return _cs(ctx), _ar(ctx)


def _cs(ctx: Ctx) -> np.ndarray:
    def f(ctx: Ctx) -> np.ndarray:
        h, lo = ctx.h, ctx.l
        with np.errstate(invalid="ignore", divide="ignore"):
            hl = np.log(h / lo)
            beta = hl * hl + shift(hl, 1) ** 2
            hmax = np.fmax(h, shift(h, 1)) + 0.0 * shift(h, 1)
            lmin = np.fmin(lo, shift(lo, 1)) + 0.0 * shift(lo, 1)
            gamma = np.log(hmax / lmin) ** 2
            alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
            cs = 2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha))
        return np.where(np.isnan(cs), np.nan, np.maximum(cs, 0.0))

    return ctx.series("cs", f)


def _ar(ctx: Ctx) -> np.ndarray:
    def f(ctx: Ctx) -> np.ndarray:
        h, lo = ctx.h, ctx.l
        with np.errstate(invalid="ignore", divide="ignore"):
            eta = (np.log(h) + np.log(lo)) / 2.0
        lcp = shift(ctx.lc, 1)
        return 4.0 * (lcp - shift(eta, 1)) * (lcp - eta)

    return ctx.series("ar", f)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """One compiled call (:func:`bqx.features._kern_small.spread_kernel`): each value with
    :func:`_spread_pt`'s arithmetic (numpy's pairwise window sums; the ATR's EMA a
    sequential dot product, libm's log/exp/sqrt)."""
    blk, a0 = ctx.block()
    return spread_kernel(blk, a0, pos, as_idx(idx), ctx.pip, _EW14)


_EW14 = ema_kernel(1.0 / 14)


FAMILY = Family("spread", False, SPECS, compute, compute_online=compute_online)
