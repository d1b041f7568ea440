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
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bqx.features._jit import kernel
from bqx.features._kern_sums import moments, np_clip, point_rows, spec_index
from bqx.features._ops import _ref, window_dots
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


# the point path's constants: per window (in WINDOWS order) its P1 and P2 basis columns,
# left-aligned in rows of WMAX values, and (w, n1, n2, p1t, p2t)
_P1 = np.zeros((len(WINDOWS), WMAX))
_P2 = np.zeros((len(WINDOWS), WMAX))
for _j, _w in enumerate(WINDOWS):
    _P1[_j, :_w] = _BASES[_w][0][:, 1]
    _P2[_j, :_w] = _BASES[_w][0][:, 2]
_CW = np.stack(_CONST, axis=1)  # (windows, 5)
_W = np.array(WINDOWS, dtype=np.int64)
_I60, _I630 = WINDOWS.index(60), WINDOWS.index(630)


@kernel
def reg_point_kernel(lc: np.ndarray, ref: float, pos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The specs ``idx`` at the rows ``pos`` of ``lc`` (log closes; ``ref`` the context's
    first finite one): ``(len(pos), len(idx))``. Per row and window its four moments (sum
    of z, z*P1, z*P2 and z² over the window of z = lc - ref ending at the row, numpy's
    pairwise sums of the products; NaN when the window reaches before the first row), then
    :func:`_stats_from`'s arithmetic, then :func:`compute`'s summaries. Only the windows
    the asked specs read are fitted; each value depends on its own window only."""
    nw = _W.shape[0]
    ns = 9
    k = nw * ns
    m = pos.shape[0]
    out = np.empty((m, idx.shape[0]))
    need = np.zeros(nw, dtype=np.bool_)
    for c in range(idx.shape[0]):
        i = idx[c]
        if i < k:
            need[i // ns] = True
        elif i == k:
            need[_I60] = True
            need[_I630] = True
        else:
            need[:] = True
    st = np.full((nw, ns), np.nan)
    for r in range(m):
        q = pos[r]
        zt = lc[q] - ref
        for j in range(nw):
            if not need[j]:
                continue
            w = _W[j]
            lo = q - w + 1
            if lo < 0:  # the window reaches before the first row: NaN moments
                s0 = s1 = s2 = szz = np.nan
            else:
                s0, s1, s2, szz = moments(lc, lo, ref, _P1[j], _P2[j], w)
            # _stats_from, value by value
            cw, n1, n2, p1t, p2t = _CW[j, 0], _CW[j, 1], _CW[j, 2], _CW[j, 3], _CW[j, 4]
            b0, b1, b2 = s0 / cw, s1 / n1, s2 / n2
            sst = szz - s0 * s0 / cw
            ss1, ss2 = b1 * b1 * n1, b2 * b2 * n2
            pos_sst = sst if sst > 0 else np.nan
            r2 = ss1 / pos_sst
            r2q = (ss1 + ss2) / pos_sst
            curv = b2 * cw * cw / math.sqrt(pos_sst / cw)
            d = sst - ss1 - ss2
            resid = math.sqrt((d if d >= 0.0 or math.isnan(d) else 0.0) / cw) + 0.0 * sst
            lin_fit = b0 + b1 * p1t
            quad_fit = lin_fit + b2 * p2t
            st[j, 0] = b1
            st[j, 1] = zt - lin_fit
            st[j, 2] = np_clip(r2, 0.0, 1.0)
            st[j, 3] = b2
            st[j, 4] = b1 + 2.0 * b2 * p1t
            st[j, 5] = zt - quad_fit
            st[j, 6] = np_clip(r2q, 0.0, 1.0)
            st[j, 7] = curv
            st[j, 8] = resid
        for c in range(idx.shape[0]):
            i = idx[c]
            if i < k:
                out[r, c] = st[i // ns, i % ns]
            elif i == k:
                out[r, c] = st[_I60, 4] - st[_I630, 0]
            elif i == k + 1:  # mean sign of the slopes (NaN when one is NaN)
                s = 0.0
                bad = False
                for j in range(nw):
                    v = st[j, 0]
                    if math.isnan(v):
                        bad = True
                    s += 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
                out[r, c] = np.nan if bad else s / nw
            else:  # mean linear R²
                s = 0.0
                for j in range(nw):
                    s += st[j, 2]
                out[r, c] = s / nw
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The asked columns at the few rows ``pos``: :func:`reg_point_kernel` (the six fits'
    moments as numpy's pairwise sums over each row's window, then compute()'s arithmetic)."""
    return reg_point_kernel(ctx.lc, _ref(ctx.lc), point_rows(pos), spec_index(idx))


FAMILY = Family("reg", True, _specs(), compute, compute_online=compute_online)
