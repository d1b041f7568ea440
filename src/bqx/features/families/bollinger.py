"""Bollinger bands (5 features, not lagged): 2 standard deviations around an SMA of close."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._ops import (
    min_pt,
    on_rows,
    rolling_mean,
    rolling_min,
    rolling_std,
    row_mean,
    row_std,
    rows_before,
    safe_div,
    windows_at,
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


def _band_pt(ctx: Ctx, pos: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(%B, width) of the ``w``-bar band at the few rows ``pos``."""
    win = windows_at(ctx.c, w, pos)
    mid, sd = row_mean(win), row_std(win)  # win.mean(axis=1), win.std(axis=1)
    c = ctx.c[pos]
    return safe_div(c - (mid - 2 * sd), 4 * sd), safe_div(4 * sd, mid)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    out = np.empty((len(pos), len(idx)))
    for j, k in enumerate(idx):
        if k < 4:
            out[:, j] = _band_pt(ctx, pos, 20 if k < 2 else 50)[k % 2]
        else:
            rows = rows_before(pos, 120)
            width = on_rows(ctx.n, rows, _band_pt(ctx, rows, 20)[1])
            out[:, j] = safe_div(width[pos], min_pt(width, 120, pos))
    return out


FAMILY = Family("bollinger", False, SPECS, compute, compute_online=compute_online)
