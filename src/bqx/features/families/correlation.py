"""Correlation (15 features, not lagged): rolling correlations of the pair's one-bar log
returns with its two currency legs and the risk cycle, between the legs, and of its absolute
returns with market-wide activity; windows 60, 240, 720 bars. Needs all 28 pairs.

* ``corr_base_w``   corr(r, index return of the base currency)
* ``corr_quote_w``  corr(r, index return of the quote currency)
* ``corr_risk_w``   corr(r, risk proxy = mean(AUD, NZD, CAD) - mean(JPY, CHF) index returns)
* ``corr_legs_w``   corr(base index return, quote index return)
* ``corr_absvol_w`` corr(|r|, mean |r| over all pairs)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._ops import corr_at, corr_pt
from bqx.features.context import Ctx, Family, Spec

WINDOWS = (60, 240, 720)
_KINDS = {
    "base": "corr(r, base currency index return)",
    "quote": "corr(r, quote currency index return)",
    "risk": "corr(r, risk proxy: mean(AUD,NZD,CAD) - mean(JPY,CHF) index returns)",
    "legs": "corr(base index return, quote index return)",
    "absvol": "corr(|r|, mean |r| across all pairs)",
}
SPECS = tuple(
    Spec(f"corr_{k}_{w}", "correlation", f"{d}, {w} bars", w, ("cross",))
    for k, d in _KINDS.items()
    for w in WINDOWS
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    r = ctx.r
    rb = ctx.ccy_return(ctx.pair[:3])
    rq = ctx.ccy_return(ctx.pair[3:])
    risk = (ctx.ccy_return("AUD") + ctx.ccy_return("NZD") + ctx.ccy_return("CAD")) / 3.0 - (
        ctx.ccy_return("JPY") + ctx.ccy_return("CHF")
    ) / 2.0
    mkt = ctx.market_abs_return()
    pairs = ((r, rb), (r, rq), (r, risk), (rb, rq), (np.abs(r), mkt))
    out = np.empty((len(pos), len(SPECS)))
    k = 0
    for x, y in pairs:
        for w in WINDOWS:
            out[:, k] = corr_at(x, y, w, pos)
            k += 1
    return out


def _inputs(ctx: Ctx, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """The two series of correlation kind ``kind`` (``_KINDS`` order), memoised."""

    def risk() -> np.ndarray:
        c = ctx.ccy_return
        return (c("AUD") + c("NZD") + c("CAD")) / 3.0 - (c("JPY") + c("CHF")) / 2.0

    r = ctx.r
    if kind == 0:
        return r, ctx.ccy_return(ctx.pair[:3])
    if kind == 1:
        return r, ctx.ccy_return(ctx.pair[3:])
    if kind == 2:
        return r, ctx.memo("risk", risk)
    if kind == 3:
        return ctx.ccy_return(ctx.pair[:3]), ctx.ccy_return(ctx.pair[3:])
    return ctx.series("abs_r", lambda c: np.abs(c.r)), ctx.market_abs_return()


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Only the asked correlations (and only the currency indices they read)."""
    out = np.empty((len(pos), len(idx)))
    for j, k in enumerate(idx):
        x, y = _inputs(ctx, k // len(WINDOWS))
        out[:, j] = corr_pt(x, y, WINDOWS[k % len(WINDOWS)], pos)
    return out


FAMILY = Family("correlation", False, SPECS, compute, compute_online=compute_online)
