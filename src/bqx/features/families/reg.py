"""REG: rolling quadratic regression of log close on bar index (57 features, lagged).

For each window w in 60, 90, 150, 240, 390, 630 bars, fit ``ln close`` on x = -(w-1)..0
(x = 0 is the current bar) with orthogonal polynomials P0 = 1, P1 = x - mean(x),
P2 = P1^2 - mean(P1^2). Per window (9):

* ``reg_w{w}_slope``     linear slope, log-return per bar
* ``reg_w{w}_lin_dev``   ln close_t minus the linear fit at t
* ``reg_w{w}_r2``        R² of the linear fit
* ``reg_w{w}_quad_a``    quadratic coefficient (per bar²)
* ``reg_w{w}_quad_b``    slope of the quadratic fit at t
* ``reg_w{w}_quad_dev``  ln close_t minus the quadratic fit at t
* ``reg_w{w}_quad_r2``   R² of the quadratic fit
* ``reg_w{w}_curv``      normalised curvature a*w² / std(ln close in the window)
* ``reg_w{w}_resid_std`` residual std of the quadratic fit (log units)

plus ``reg_slope_diff`` (quad slope at t of w=60 minus linear slope of w=630),
``reg_trend_agree`` (mean sign of the 6 linear slopes) and ``reg_r2_mean``.

Each moment is a direct dot product of the window with a fixed basis (a time-domain
convolution in batch, a gathered window online), never an FFT: each value depends only on
its own window, bit for bit.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from bqx.features._ops import _ref, row_mean, window_dots, windows_at
from bqx.features.context import Ctx, Family, Spec

WINDOWS = (60, 90, 150, 240, 390, 630)
WMAX = max(WINDOWS)
STATS = ("slope", "lin_dev", "r2", "quad_a", "quad_b", "quad_dev", "quad_r2", "curv", "resid_std")
_DESC = {
    "slope": "linear slope of ln close per bar",
    "lin_dev": "ln close_t - linear fit at t",
    "r2": "R² of the linear fit",
    "quad_a": "quadratic coefficient a (per bar²)",
    "quad_b": "slope of the quadratic fit at t",
    "quad_dev": "ln close_t - quadratic fit at t",
    "quad_r2": "R² of the quadratic fit",
    "curv": "a*w² / std(ln close over the window)",
    "resid_std": "residual std of the quadratic fit",
}


def _specs() -> tuple[Spec, ...]:
    out = [
        Spec(f"reg_w{w}_{s}", "reg", f"{_DESC[s]} (w={w})", w - 1) for w in WINDOWS for s in STATS
    ]
    out.append(
        Spec("reg_slope_diff", "reg", "quad slope at t (w=60) - linear slope (w=630)", WMAX - 1)
    )
    out.append(Spec("reg_trend_agree", "reg", "mean sign of the 6 linear slopes", WMAX - 1))
    out.append(Spec("reg_r2_mean", "reg", "mean linear R² over the 6 windows", WMAX - 1))
    return tuple(out)


def _basis(w: int) -> tuple[np.ndarray, float, float, float, float]:
    x = np.arange(-(w - 1), 1, dtype=float)
    p1 = x - x.mean()
    p2 = p1 * p1 - (p1 * p1).mean()
    b = np.stack([np.ones(w), p1, p2], axis=1)
    return b, float((p1 * p1).sum()), float((p2 * p2).sum()), float(p1[-1]), float(p2[-1])


_BASES = {w: _basis(w) for w in WINDOWS}


def _stats(w: int, z_t: np.ndarray, mom: np.ndarray) -> np.ndarray:
    """The 9 statistics of window ``w`` from its moments (sum z, z*P1, z*P2, z²)."""
    _, n1, n2, p1t, p2t = _BASES[w]
    return _stats_from(w, n1, n2, p1t, p2t, z_t, mom)


def _stats_from(
    w: Any, n1: Any, n2: Any, p1t: Any, p2t: Any, z_t: np.ndarray, mom: np.ndarray
) -> np.ndarray:
    """:func:`_stats` with the window's constants given: scalars for one window, or arrays
    (one entry per window, moments ``(m, windows, 4)``) for all windows in one pass."""
    s0, s1, s2, szz = mom[..., 0], mom[..., 1], mom[..., 2], mom[..., 3]
    b0, b1, b2 = s0 / w, s1 / n1, s2 / n2
    sst = szz - s0 * s0 / w
    ss1, ss2 = b1 * b1 * n1, b2 * b2 * n2
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_sst = np.where(sst > 0, sst, np.nan)
        r2 = ss1 / pos_sst
        r2q = (ss1 + ss2) / pos_sst
        curv = b2 * w * w / np.sqrt(pos_sst / w)
    resid = np.sqrt(np.maximum(sst - ss1 - ss2, 0.0) / w) + 0.0 * sst
    lin_fit = b0 + b1 * p1t
    quad_fit = lin_fit + b2 * p2t
    # np.stack([...], axis=-1) written in place; np.clip's ufunc called directly
    out = np.empty((*np.broadcast_shapes(b1.shape, z_t.shape, sst.shape), len(STATS)))
    out[..., 0] = b1
    out[..., 1] = z_t - lin_fit
    _clip(r2, 0.0, 1.0, out=out[..., 2])
    out[..., 3] = b2
    out[..., 4] = b1 + 2.0 * b2 * p1t
    out[..., 5] = z_t - quad_fit
    _clip(r2q, 0.0, 1.0, out=out[..., 6])
    out[..., 7] = curv
    out[..., 8] = resid
    return out


_clip = importlib.import_module("numpy._core.umath").clip  # the ufunc np.clip calls


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    m = len(pos)
    k = len(WINDOWS) * len(STATS)
    out = np.empty((m, k + 3))
    # log prices relative to the context's first bar: small numbers, so the sum of squares
    # keeps its precision; P1 and P2 sum to zero, so the slope terms do not depend on the shift
    z = ctx.lc - _ref(ctx.lc)
    z2 = z * z
    z_t = z[pos]
    for j, w in enumerate(WINDOWS):
        basis = _BASES[w][0]
        mom = np.empty((m, 4))
        mom[:, :3] = window_dots(z, basis, pos)
        mom[:, 3] = window_dots(z2, np.ones((w, 1)), pos)[:, 0]
        out[:, j * len(STATS) : (j + 1) * len(STATS)] = _stats(w, z_t, mom)
    n_stats = len(STATS)
    slopes = out[:, [j * n_stats for j in range(len(WINDOWS))]]
    r2s = out[:, [j * n_stats + 2 for j in range(len(WINDOWS))]]
    i60, i630 = WINDOWS.index(60), WINDOWS.index(630)
    out[:, k + 0] = out[:, i60 * n_stats + 4] - out[:, i630 * n_stats]
    tr = np.sign(slopes).mean(axis=1)
    tr[np.isnan(slopes).any(axis=1)] = np.nan
    out[:, k + 1] = tr
    out[:, k + 2] = r2s.mean(axis=1)
    return out


_CONST = tuple(
    np.array([_BASES[w][k] if k else w for w in WINDOWS], dtype=float) for k in range(5)
)  # w, n1, n2, p1t, p2t per window


def _windows_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """All 9 statistics of all 6 windows at the few rows ``pos``: (m, 6, 9), from one
    gathered window of the longest length (the shorter ones are its tail), memoised."""

    def f() -> np.ndarray:
        # the gathered windows of z = ln close - ref (shifted after the gather: the same
        # elementwise differences, without shifting the whole context)
        win = windows_at(ctx.lc, WMAX, pos)
        np.subtract(win, _ref(ctx.lc), out=win)
        sq = win * win  # the squares of every window's tail, elementwise as before
        mom = np.empty((len(pos), len(WINDOWS), 4))
        for j, w in enumerate(WINDOWS):
            tail = win[:, WMAX - w :]
            mom[:, j, :3] = tail @ _BASES[w][0]
            mom[:, j, 3] = np.add.reduce(sq[:, WMAX - w :], 1)  # (tail * tail).sum(axis=1)
        cw, n1, n2, p1t, p2t = _CONST
        return _stats_from(cw, n1, n2, p1t, p2t, win[:, -1:], mom)  # z[pos][:, None]

    return ctx.memo(("reg_pt", pos.tobytes()), f)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The asked columns from :func:`_windows_pt` (one gathered window, all six fits)."""
    k = len(WINDOWS) * len(STATS)
    key = tuple(idx)
    cols = _COLS.get(key)
    if cols is None:
        per = [c for c, i in enumerate(key) if i < k]
        if len(_COLS) > 1024:
            _COLS.clear()
        cols = _COLS[key] = (len(per) == len(key), per, [key[c] for c in per])
    flat = _windows_pt(ctx, pos).reshape(len(pos), k)
    only_per, per, src = cols
    if only_per:  # the usual case: per-window statistics only, one gather
        return flat[:, src]
    # the summaries with compute()'s arithmetic on the same values: contiguous (m, 6)
    # copies of the per-window columns, as np.stack of them made; numpy's mean and any
    # as their ufunc reductions (row_mean: the same arithmetic)
    n_stats = len(STATS)
    out = np.empty((len(pos), len(key)))
    if per:  # the per-window statistics in one gather
        out[:, per] = flat[:, src]
    for c, i in enumerate(key):
        if i < k:
            continue
        if i == k:
            out[:, c] = flat[:, _I60 * n_stats + 4] - flat[:, _I630 * n_stats]
        else:
            col = 0 if i == k + 1 else 2
            vals = np.ascontiguousarray(flat[:, col::n_stats])
            if i == k + 1:
                tr = row_mean(np.sign(vals))  # np.sign(vals).mean(axis=1)
                tr[np.logical_or.reduce(np.isnan(vals), 1)] = np.nan  # .any(axis=1)
                out[:, c] = tr
            else:
                out[:, c] = row_mean(vals)  # vals.mean(axis=1)
    return out


_COLS: dict[tuple[int, ...], tuple[bool, list[int], list[int]]] = {}
_I60, _I630 = WINDOWS.index(60), WINDOWS.index(630)


FAMILY = Family("reg", True, _specs(), compute, compute_online=compute_online)
