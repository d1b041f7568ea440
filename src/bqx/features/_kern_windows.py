"""Compiled point primitives (numba kernels, :mod:`bqx.features._jit`) for the online path of
the technical family: the definitions of :mod:`bqx.features._ops`' series, evaluated at a
few rows of a context's arrays.

Conventions (those of the series): row ``i`` of an array is the context's row ``i``; a
window that reaches before row 0 is incomplete (NaN); a window that holds a NaN is NaN.

* :func:`ema_rows` is :func:`bqx.features._ops.ema` (the truncated, normalised EMA) on a run
  of consecutive rows: the same recursive filter (evaluated four rows at a time) started at
  zero at the first row the run's windows read, then ``(e[t] - beta e[t-W]) / (1 - beta)``; in
  exact arithmetic each value is the dot product of its own ``W``-row window with the EMA
  weights, as in the batch (whose filter starts at the first row of the history: the two
  differ by rounding only). One pass over ``W - 1 + rows`` values serves all the rows of a
  call and the runs of rows that nested EMAs (MACD signal, ADX, TRIX) read.
* window sums run oldest to newest (the batch's convolution sums in another order: the same
  values to rounding); max, min and the index of the most recent maximum are exact.
"""

from __future__ import annotations

import math

import numpy as np

from bqx.features._jit import kernel
from bqx.features._ops import ema_window

NAN = math.nan


def ema_params(alpha: float) -> tuple[float, int, float]:
    """(alpha, W, beta = (1 - alpha)^W) of the truncated EMA, as :func:`_ops.ema` takes them
    (the same Python floats: passed to the kernels as constants)."""
    w = ema_window(alpha)
    return alpha, w, (1.0 - alpha) ** w


@kernel
def safe_div1(a: float, b: float) -> float:
    """:func:`bqx.features._ops.safe_div` of two numbers: ``a / b``, NaN where not finite."""
    if b == 0.0:
        return NAN
    r = a / b
    if math.isfinite(r):
        return r
    return NAN


@kernel
def ema_rows(
    x: np.ndarray, xoff: int, a: int, b: int, alpha: float, w: int, beta: float
) -> np.ndarray:
    """The truncated EMA (``_ops.ema(x, alpha)``) at the rows ``a..b`` (``0 <= a <= b``):
    an array of ``b - a + 1`` values. ``x[i - xoff]`` is the series at row ``i``; it must
    cover the rows ``max(a - w + 1, 0)..b`` (``xoff <= max(a - w + 1, 0)``). A value is NaN
    where its window reaches before row 0 or holds a non-finite value."""
    s = a - w + 1
    if s < 0:
        s = 0
    n = b - s + 1
    om = 1.0 - alpha
    om2 = om * om
    om3 = om2 * om
    om4 = om3 * om
    # the recursive filter e[i] = alpha x[i] + (1 - alpha) e[i-1] from e = 0 before row s
    # (non-finite x as 0), four rows at a time: the rows' own terms first, then the
    # previous state carried over them (one multiply-add per four rows on the dependency
    # chain instead of four)
    e_run = np.empty(n)
    e = 0.0
    i = 0
    while i + 4 <= n:
        x0 = x[s + i - xoff]
        x1 = x[s + i + 1 - xoff]
        x2 = x[s + i + 2 - xoff]
        x3 = x[s + i + 3 - xoff]
        p0 = alpha * x0 if math.isfinite(x0) else 0.0
        p1 = (alpha * x1 if math.isfinite(x1) else 0.0) + om * p0
        p2 = (alpha * x2 if math.isfinite(x2) else 0.0) + om * p1
        p3 = (alpha * x3 if math.isfinite(x3) else 0.0) + om * p2
        e_run[i] = p0 + om * e
        e_run[i + 1] = p1 + om2 * e
        e_run[i + 2] = p2 + om3 * e
        e = p3 + om4 * e
        e_run[i + 3] = e
        i += 4
    while i < n:
        xv = x[s + i - xoff]
        e = (alpha * xv if math.isfinite(xv) else 0.0) + om * e
        e_run[i] = e
        i += 1
    # FIR_W(t) = (e[t] - beta e[t-W]) / (1 - beta); NaN where the window reaches before
    # row 0 or holds a non-finite value
    nb = 1.0 - beta
    out = np.empty(b - a + 1)
    last_bad = -1
    for i in range(s, b + 1):
        if not math.isfinite(x[i - xoff]):
            last_bad = i
        if i >= a:
            if i < w - 1 or last_bad > i - w:
                out[i - a] = NAN
            elif i - w >= s:
                out[i - a] = (e_run[i - s] - beta * e_run[i - w - s]) / nb
            else:
                out[i - a] = e_run[i - s] / nb
    return out


@kernel
def win_sum(x: np.ndarray, t: int, w: int) -> float:
    """Sum of ``x`` over the ``w`` rows ending at ``t`` (NaN if incomplete or a NaN)."""
    if t - w + 1 < 0:
        return NAN
    s = 0.0
    for i in range(t - w + 1, t + 1):
        s += x[i]
    return s


@kernel
def win_max(x: np.ndarray, t: int, w: int) -> float:
    """Max of ``x`` over the ``w`` rows ending at ``t`` (NaN if incomplete or a NaN)."""
    if t - w + 1 < 0:
        return NAN
    m = x[t]
    for i in range(t - w + 1, t + 1):
        xv = x[i]
        if xv != xv:
            return NAN
        if xv > m:
            m = xv
    return m


@kernel
def win_min(x: np.ndarray, t: int, w: int) -> float:
    """Min of ``x`` over the ``w`` rows ending at ``t`` (NaN if incomplete or a NaN)."""
    if t - w + 1 < 0:
        return NAN
    m = x[t]
    for i in range(t - w + 1, t + 1):
        xv = x[i]
        if xv != xv:
            return NAN
        if xv < m:
            m = xv
    return m


@kernel
def true_range_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, i: int) -> float:
    """max(h - l, |h - c[i-1]|, |l - c[i-1]|) at row ``i`` (NaN at row 0 or with a NaN)."""
    if i < 1:
        return NAN
    pc = c[i - 1]
    hv = h[i]
    lv = lo[i]
    if pc != pc or hv != hv or lv != lv:
        return NAN
    tr = hv - lv
    u = abs(hv - pc)
    if u > tr:
        tr = u
    u = abs(lv - pc)
    if u > tr:
        tr = u
    return tr
