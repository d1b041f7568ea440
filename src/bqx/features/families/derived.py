"""Derived (3 features, not lagged).

* ``momentum_alignment`` = sum_w bqx_w / sum_w |bqx_w| over w in 15..75: +1 when every
  horizon points up, -1 when every horizon points down, ~0 when they disagree
* ``volatility_regime``  = realised volatility over 60 bars / over 720 bars
* ``trend_strength``     = ADX(14)/100 signed by +DI - -DI
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._kern_small import as_idx, derived_kernel
from bqx.features._ops import safe_div, std_at
from bqx.features.context import Ctx, Family, Spec
from bqx.features.families import bqx as bqx_family
from bqx.features.families import technical
from bqx.features.families.technical import W14, adx

SPECS = (
    Spec("momentum_alignment", "derived", "sum bqx_w / sum |bqx_w|, w in 15..75", 75),
    Spec("volatility_regime", "derived", "realised vol 60 bars / realised vol 720 bars", 720),
    Spec("trend_strength", "derived", "ADX(14)/100 * sign(+DI - -DI)", 2 * W14 + 1),
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    out = np.empty((len(pos), 3))
    avgs = bqx_family.avg_at(ctx, pos)
    out[:, 0] = safe_div(avgs.sum(axis=1), np.abs(avgs).sum(axis=1))
    out[:, 1] = safe_div(std_at(ctx.r, 60, pos), std_at(ctx.r, 720, pos))
    a, pdi, mdi = adx(ctx, 14)
    out[:, 2] = (a / 100.0 * np.sign(pdi - mdi))[pos]
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """momentum_alignment and volatility_regime in one compiled call
    (:func:`bqx.features._kern_small.derived_kernel`); trend_strength from the technical
    family's online path (its compiled ADX and DIs: ``adx_14``, ``plus_di_14``,
    ``minus_di_14``)."""
    ix = as_idx(idx)
    blk, a0 = ctx.block()
    out = derived_kernel(blk, a0, pos, ix)
    for j, k in enumerate(idx):
        if k == 2:
            a, pdi, mdi = technical.compute_online(ctx, pos, _ADX_DI).T
            out[:, j] = a / 100.0 * np.sign(pdi - mdi)
    return out


#: technical's adx_14, plus_di_14, minus_di_14
_ADX_DI = (8, 9, 10)
assert [technical.FAMILY.specs[k].name for k in _ADX_DI] == ["adx_14", "plus_di_14", "minus_di_14"]


FAMILY = Family("derived", False, SPECS, compute, compute_online=compute_online)
