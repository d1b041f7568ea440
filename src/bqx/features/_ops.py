"""Numeric primitives for the feature families.

Two properties every primitive keeps, because the product depends on them:

* **Causal, bit for bit.** The value at row ``t`` is computed only from rows ``<= t`` with an
  arithmetic that does not depend on later rows (recursive filters run forward; windowed
  reductions see only their window). Changing a bar after ``t`` cannot change a feature at
  ``t``, not even in the last bit. FFT convolutions are avoided for this reason: they mix
  every value of a block into every output.
* **Exact windows.** Windowed sums are direct convolutions (one dot product per window), not
  prefix sums whose rounding grows with the length of the history; variances shift the data
  by a reference value first to avoid cancellation.
* **Finite lookback.** Each value depends on a declared number of rows, so the online path
  (a short window of history) reproduces the batch path (the whole history). Recursive
  indicators (EMA, Wilder) are therefore defined as *truncated* exponential filters over the
  last ``W`` rows, with ``W`` chosen so the neglected weight ``(1-alpha)^W`` is below
  ``EMA_TOL`` (1e-9): the relative difference from the infinite-history definition is then
  below 1e-9 times the relative spread of old vs recent values (measured in
  ``benchmarks/bench_features.py``). They are evaluated in O(n) with a recursive filter and
  the identity ``FIR_W(t) = IIR(t) - (1-alpha)^W * IIR(t-W)``.

Missing values (NaN) poison exactly the windows that contain them.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d

EMA_TOL = 1e-9
_CHUNK = 8192

Arr = np.ndarray


_EMA_WINDOWS: dict[float, int] = {}


def ema_window(alpha: float) -> int:
    """Rows of history a truncated EMA with smoothing ``alpha`` uses (neglected weight < EMA_TOL)."""
    w = _EMA_WINDOWS.get(alpha)
    if w is None:
        w = _EMA_WINDOWS[alpha] = int(np.ceil(np.log(EMA_TOL) / np.log1p(-alpha)))
    return w


_FILTER: list[Callable[..., Arr]] = []
_FILTER_COEF: dict[float, tuple[Arr, Arr]] = {}


def _lfilter1(alpha: float, x: Arr) -> Arr:
    """``scipy.signal.lfilter([alpha], [1, alpha - 1], x)``: the same C routine called with
    the same arrays, without lfilter's argument handling (~5x the filter itself on the few
    hundred rows of an online call)."""
    if not _FILTER:
        try:
            from scipy.signal._sigtools import _linear_filter

            _FILTER.append(_linear_filter)
        except ImportError:  # pragma: no cover - private scipy API moved: the public call
            from scipy.signal import lfilter

            _FILTER.append(lambda b, a, v, axis: lfilter(b, a, v, axis=axis))
    coef = _FILTER_COEF.get(alpha)
    if coef is None:
        # what lfilter passes on: np.atleast_1d of the lists, float64
        coef = _FILTER_COEF[alpha] = (np.atleast_1d([alpha]), np.atleast_1d([1.0, alpha - 1.0]))
    return _FILTER[0](coef[0], coef[1], np.asarray(x), -1)


def span_alpha(span: float) -> float:
    """EMA smoothing for a span (``2/(span+1)``, the pandas/TA-Lib convention)."""
    return 2.0 / (span + 1.0)


def bad_count(x: Arr, w: int) -> Arr:
    """Number of non-finite values in the window of ``w`` rows ending at each row.

    Rows before ``w-1`` count as incomplete (return ``w``).
    """
    bad = ~np.isfinite(x)
    c = np.concatenate([[0], np.cumsum(bad, dtype=np.int64)])
    out = np.full(len(x), w, dtype=np.int64)
    if len(x) >= w:
        out[w - 1 :] = c[w:] - c[:-w]
    return out


def ema(x: Arr, alpha: float, window: int | None = None) -> Arr:
    """Truncated, normalised EMA: ``sum_{i<W} alpha(1-alpha)^i x[t-i] / (1-(1-alpha)^W)``.

    NaN where the window holds a NaN or is incomplete.
    """
    # scipy.signal is imported on first use (~0.8 s; e.g. the monitoring pass's maturing,
    # targets only, never computes an EMA)
    w = window or ema_window(alpha)
    bad = ~np.isfinite(x)
    any_bad = bool(bad.any())
    x0 = np.where(bad, 0.0, x) if any_bad else x
    e = _lfilter1(alpha, x0)
    beta = (1.0 - alpha) ** w
    out = e.copy()
    if w < len(e):
        out[w:] -= beta * e[:-w]
    out /= 1.0 - beta
    _mask_incomplete(out, x, w, any_bad)
    return out


def _mask_incomplete(out: Arr, x: Arr, w: int, any_bad: bool | None = None) -> None:
    """NaN where the window of ``w`` rows ending at a row is incomplete or holds a NaN."""
    if any_bad is None:
        any_bad = bool((~np.isfinite(x)).any())
    if any_bad:
        out[bad_count(x, w) > 0] = np.nan
    else:
        out[: w - 1] = np.nan


def wilder(x: Arr, n: int) -> Arr:
    """Wilder's smoothing (RMA, alpha = 1/n), truncated like :func:`ema`."""
    return ema(x, 1.0 / n)


def _pad(values: Arr, n: int, w: int) -> Arr:
    out = np.full(n, np.nan)
    if n >= w:
        out[w - 1 :] = values
    return out


def conv_sum(x: Arr, kernel: Arr) -> Arr:
    """``sum_j kernel[j] * x[t-w+1+j]`` for the window of ``w = len(kernel)`` rows ending at t
    (kernel ordered oldest -> newest). NaN where the window holds a NaN or is incomplete.

    Direct (time-domain) convolution: each output is a dot product over its own window, so it
    is exact to rounding and causal bit for bit, at ~10 GFLOP/s.
    """
    n, w = len(x), len(kernel)
    if n < w:
        return np.full(n, np.nan)
    return _pad(np.convolve(x, kernel[::-1], mode="valid"), n, w)


def rolling(x: Arr, w: int, fn: Callable[..., Arr]) -> Arr:
    """``fn(window, axis=1)`` over every window of ``w`` rows ending at each row (O(n*w); for
    short windows and non-linear reductions only)."""
    n = len(x)
    if n < w:
        return np.full(n, np.nan)
    view = sliding_window_view(x, w)
    out = np.empty(n - w + 1)
    for s in range(0, len(view), _CHUNK * 4):
        out[s : s + _CHUNK * 4] = fn(view[s : s + _CHUNK * 4], axis=1)
    return _pad(out, n, w)


def rolling_sum(x: Arr, w: int) -> Arr:
    return conv_sum(x, np.ones(w))


def rolling_mean(x: Arr, w: int) -> Arr:
    return conv_sum(x, np.full(w, 1.0 / w))


def _ref(x: Arr) -> float:
    """The first finite value of ``x`` (0.0 when there is none)."""
    if len(x) and math.isfinite(x[0]):  # the usual case, without scanning the array
        return float(x[0])
    ok = np.flatnonzero(np.isfinite(x))
    return float(x[ok[0]]) if len(ok) else 0.0


def rolling_var(x: Arr, w: int) -> Arr:
    """Population variance (ddof=0) over trailing windows.

    Computed from the first two moments of ``x - x_ref`` (``x_ref`` = the first finite value
    of the context, known before every output row): the shift keeps the moments small, so the
    subtraction loses at most ~1e-11 relative on FX prices.
    """
    z = x - _ref(x)
    m1 = rolling_mean(z, w)
    m2 = rolling_mean(z * z, w)
    return np.maximum(m2 - m1 * m1, 0.0) + 0.0 * m1


def rolling_std(x: Arr, w: int) -> Arr:
    """Population standard deviation (ddof=0) over trailing windows."""
    return np.sqrt(rolling_var(x, w))


def bars_since_max(x: Arr, w: int) -> Arr:
    """Bars since the most recent maximum within the trailing ``w`` rows (0 = this bar).

    Exact and O(n log n): each value is encoded as ``rank * n + index`` (ties share a rank),
    so the window maximum of the codes is the most recent of the maximal values. Only order
    relations inside each window matter, so the result is causal and the same online.
    """
    n = len(x)
    out = np.full(n, np.nan)
    if n < w:
        return out
    finite = np.isfinite(x)
    ranks = np.zeros(n, dtype=np.int64)
    if finite.any():
        _, inv = np.unique(x[finite], return_inverse=True)
        ranks[finite] = inv + 1
    code = ranks * n + np.arange(n, dtype=np.int64)
    cen = maximum_filter1d(code, size=w, mode="nearest")
    best = cen[w // 2 : w // 2 + n - w + 1]
    out[w - 1 :] = (np.arange(w - 1, n) - best % n).astype(float)
    _mask_incomplete(out, x, w, not bool(finite.all()))
    return out


def bars_since_min(x: Arr, w: int) -> Arr:
    return bars_since_max(-x, w)


def rolling_max(x: Arr, w: int) -> Arr:
    """Max over the trailing window, O(n) (van Herk/Gil-Werman in scipy; max is exact)."""
    n = len(x)
    if n < w:
        return np.full(n, np.nan)
    fin = np.isfinite(x)
    any_bad = not bool(fin.all())
    xf = np.where(fin, x, -np.inf) if any_bad else x
    cen = maximum_filter1d(xf, size=w, mode="nearest")
    out = np.full(n, np.nan)
    out[w - 1 :] = cen[w // 2 : w // 2 + n - w + 1]
    _mask_incomplete(out, x, w, any_bad)
    return out


def rolling_min(x: Arr, w: int) -> Arr:
    n = len(x)
    if n < w:
        return np.full(n, np.nan)
    fin = np.isfinite(x)
    any_bad = not bool(fin.all())
    xf = np.where(fin, x, np.inf) if any_bad else x
    cen = minimum_filter1d(xf, size=w, mode="nearest")
    out = np.full(n, np.nan)
    out[w - 1 :] = cen[w // 2 : w // 2 + n - w + 1]
    _mask_incomplete(out, x, w, any_bad)
    return out


_OFFSETS: dict[int, Arr] = {}


def windows_at(x: Arr, w: int, pos: Arr) -> Arr:
    """The windows of ``w`` rows ending at each of ``pos`` as a 2-D copy; rows before the start
    of ``x`` are NaN (so a shorter sub-window at the right end can still be complete)."""
    off = _OFFSETS.get(w)
    if off is None:
        off = _OFFSETS[w] = np.arange(1 - w, 1)
    if len(pos) > 64:
        out = np.full((len(pos), w), np.nan)
        ok = pos >= w - 1
        if ok.any():
            out[ok] = sliding_window_view(x, w)[pos[ok] - w + 1]
        short = np.flatnonzero(~ok)
        if len(short):
            idx = pos[short, None] + off
            part = x[np.maximum(idx, 0)]
            part[idx < 0] = np.nan
            out[short] = part
        return out
    if 0 < len(pos) <= 8:
        # a handful of rows (the online path): copy the windows out of a strided view of
        # ``x`` (or each window as a slice), ~3-6x cheaper than building and gathering the
        # index matrix; the same elements in a fresh C-ordered array
        pl = pos.tolist()
        if min(pl) >= w - 1:
            q = pl[0]
            if len(pl) == 1:
                return x[q - w + 1 : q + 1].reshape(1, w).copy()
            step = pl[1] - q
            it = x.itemsize
            if step and x.strides[0] == it and pl == list(range(q, q + step * len(pl), step)):
                # evenly spaced rows (t and its lags): one view, one copy
                view = np.ndarray((len(pl), w), x.dtype, x, (q - w + 1) * it, (step * it, it))
                return view.copy()
            out = np.empty((len(pl), w), dtype=x.dtype)
            for i, q in enumerate(pl):
                out[i] = x[q - w + 1 : q + 1]
            return out
    idx = pos[:, None] + off
    if len(pos) and pos.min() >= w - 1:
        return x[idx]
    out = x[np.maximum(idx, 0)]
    out[idx < 0] = np.nan
    return out


def window_dots(x: Arr, kernels: Arr, pos: Arr) -> Arr:
    """``sum_j kernels[j, k] * x[t-w+1+j]`` at rows ``pos`` for each kernel column k.

    Few rows (online): gather those windows and multiply. Many rows (batch): one direct
    convolution per kernel over the whole series. Same sums either way (to rounding).
    """
    w, k = kernels.shape
    if len(pos) * 16 < len(x):
        return windows_at(x, w, pos) @ kernels
    out = np.empty((len(pos), k))
    for j in range(k):
        out[:, j] = conv_sum(x, np.ascontiguousarray(kernels[:, j]))[pos]
    return out


def _few(pos: Arr, n: int) -> bool:
    return len(pos) * 16 < n


def mean_at(x: Arr, w: int, pos: Arr) -> Arr:
    """Trailing ``w``-row mean at ``pos`` (gathered windows when few rows are asked)."""
    if _few(pos, len(x)):
        return windows_at(x, w, pos).mean(axis=1)
    return rolling_mean(x, w)[pos]


def std_at(x: Arr, w: int, pos: Arr) -> Arr:
    """Trailing ``w``-row population std at ``pos``."""
    if _few(pos, len(x)):
        return windows_at(x, w, pos).std(axis=1)
    return rolling_std(x, w)[pos]


def corr_at(x: Arr, y: Arr, w: int, pos: Arr) -> Arr:
    """Trailing ``w``-row Pearson correlation at ``pos``."""
    if not _few(pos, len(x)):
        return rolling_corr(x, y, w)[pos]
    return corr_pt(x, y, w, pos)


def at_positions(
    x: Arr, w: int, pos: Arr, fn: Callable[[Arr], Arr], k: int, chunk: int = _CHUNK
) -> Arr:
    """Apply ``fn(windows) -> (m, k)`` to the ``w``-row windows ending at ``pos`` in chunks."""
    out = np.full((len(pos), k), np.nan)
    for s in range(0, len(pos), chunk):
        p = pos[s : s + chunk]
        out[s : s + chunk] = fn(windows_at(x, w, p))
    return out


def shift(x: Arr, k: int) -> Arr:
    """``x[t-k]`` at row t (NaN for the first k rows)."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k] if k > 0 else x
    return out


def safe_div(a: Arr, b: Arr) -> Arr:
    """a / b with NaN (not inf) where b is 0 or non-finite. Call inside ``np.errstate``
    (the pipeline evaluates every family under one) to silence the division warnings."""
    out = np.divide(a, b)
    out[~np.isfinite(out)] = np.nan
    return out


def rolling_corr(x: Arr, y: Arr, w: int) -> Arr:
    """Pearson correlation over trailing windows (inputs shifted by their first finite value).
    NaN when either side is constant in the window."""
    x = x - _ref(x)
    y = y - _ref(y)
    sx = rolling_sum(x, w)
    sy = rolling_sum(y, w)
    sxx = rolling_sum(x * x, w)
    syy = rolling_sum(y * y, w)
    sxy = rolling_sum(x * y, w)
    cov = sxy - sx * sy / w
    vx = sxx - sx * sx / w
    vy = syy - sy * sy / w
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(vx * vy)
        out = cov / den
    tiny = den <= 1e-30
    out[tiny] = np.nan
    return np.clip(out, -1.0, 1.0)


# =========================================================================================
# point evaluation (the online path): each value from the rows it reads, nothing else
# =========================================================================================
# Every ``*_pt`` function returns the value of its series counterpart at the rows ``pos``
# only, by one reduction over the gathered window ending at each row (NaN where the window
# holds a NaN or reaches before the first row, as the series do). Each value depends on its
# own window and nothing else: not on the context's start, not on the other rows asked for.
# Sums may differ from the series' in the last bits (another summation order); max, min and
# arg-max are exact.

_EMA_KERNELS: dict[tuple[float, int], Arr] = {}
_EMA_PT_KERNELS: dict[tuple[float, int | None], Arr] = {}


def ema_kernel(alpha: float, window: int | None = None) -> Arr:
    """The truncated EMA's weights over its window, oldest -> newest (they sum to 1)."""
    w = window or ema_window(alpha)
    k = _EMA_KERNELS.get((alpha, w))
    if k is None:
        i = np.arange(w - 1, -1, -1, dtype=float)
        k = _EMA_KERNELS[(alpha, w)] = alpha * (1.0 - alpha) ** i / (1.0 - (1.0 - alpha) ** w)
    return k


def ema_pt(x: Arr, alpha: float, pos: Arr, window: int | None = None) -> Arr:
    """:func:`ema` at ``pos``: the dot product of each window with the EMA weights; for a long
    run of consecutive rows (an inner series that an outer window reads), the recursive
    filter over just the rows those windows cover."""
    k = _EMA_PT_KERNELS.get((alpha, window))
    if k is None:
        k = _EMA_PT_KERNELS[(alpha, window)] = ema_kernel(alpha, window)
    w = len(k)
    if len(pos) <= 8:  # the online rows: gathered windows times the weights
        return windows_at(x, w, pos) @ k
    if len(pos) > 64 and int(pos[-1] - pos[0]) == len(pos) - 1 and pos[0] >= 0:
        a = max(int(pos[0]) - w + 1, 0)
        return ema(x[a : int(pos[-1]) + 1], alpha, w)[pos - a]
    return windows_at(x, w, pos) @ k


def ema_pt_many(xs: list[Arr], alpha: float, pos: Arr) -> list[Arr]:
    """``[ema_pt(x, alpha, pos) for x in xs]`` (series of equal length): for a long run of
    consecutive rows, the recursive filters of all series in one call over a 2-D block
    (scipy runs the same 1-D filter on each row), then :func:`ema`'s steps on the block;
    the same arithmetic per series, so the same values bit for bit."""
    k = ema_kernel(alpha)
    w = len(k)
    if not (len(pos) > 64 and int(pos[-1] - pos[0]) == len(pos) - 1 and pos[0] >= 0):
        return [ema_pt(x, alpha, pos) for x in xs]
    a = max(int(pos[0]) - w + 1, 0)
    b = int(pos[-1]) + 1
    block = np.stack([x[a:b] for x in xs])
    if not np.isfinite(block).all():  # NaNs take ema()'s masking path, series by series
        return [ema(x[a:b], alpha, w)[pos - a] for x in xs]
    _lfilter1(alpha, block[0])  # binds the filter routine
    coef = _FILTER_COEF[alpha]
    e = _FILTER[0](coef[0], coef[1], block, -1)
    beta = (1.0 - alpha) ** w
    out = e.copy()
    if w < e.shape[1]:
        out[:, w:] -= beta * e[:, :-w]
    out /= 1.0 - beta
    out[:, : w - 1] = np.nan
    sel = out[:, pos - a]
    return [sel[i] for i in range(len(xs))]


def wilder_pt(x: Arr, n: int, pos: Arr) -> Arr:
    return ema_pt(x, 1.0 / n, pos)


def sum_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_sum` at ``pos``."""
    return windows_at(x, w, pos).sum(axis=1)


def row_mean(a: Arr) -> Arr:
    """``a.mean(axis=1)`` of a 2-D float64 array with numpy's own arithmetic (the sum along
    each row, then a true division by the row length), without the method's Python layers."""
    return _add_reduce(a, 1) / a.shape[1]


def row_std(a: Arr) -> Arr:
    """``a.std(axis=1)`` (ddof 0) of a 2-D float64 array with numpy's own arithmetic
    (``numpy/_core/_methods.py::_var``: mean with keepdims, deviations, their squares in
    place, sum, division, square root), without the method's Python layers."""
    n = a.shape[1]
    x = a - _add_reduce(a, 1, keepdims=True) / n
    np.square(x, out=x)
    return np.sqrt(_add_reduce(x, 1) / n)


_add_reduce = np.add.reduce


def mean_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_mean` at ``pos``."""
    return row_mean(windows_at(x, w, pos))


def std_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_std` at ``pos`` (population; numpy's two-pass formula)."""
    return row_std(windows_at(x, w, pos))


def max_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_max` at ``pos`` (exact)."""
    return windows_at(x, w, pos).max(axis=1)


def min_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_min` at ``pos`` (exact)."""
    return windows_at(x, w, pos).min(axis=1)


def bars_since_max_pt(x: Arr, w: int, pos: Arr) -> Arr:
    """:func:`bars_since_max` at ``pos`` (exact: the most recent of the maximal values)."""
    win = windows_at(x, w, pos)[:, ::-1]  # newest first: argmax finds the most recent max
    out = np.argmax(win, axis=1).astype(float)
    out[~np.isfinite(win).all(axis=1)] = np.nan
    return out


def bars_since_min_pt(x: Arr, w: int, pos: Arr) -> Arr:
    return bars_since_max_pt(-x, w, pos)


def rows_before(pos: Arr, w: int) -> Arr:
    """The rows the windows of ``w`` rows ending at ``pos`` read (sorted, unique, >= 0):
    where an inner series must be known for an outer window reduction."""
    if not len(pos):
        return pos
    if len(pos) <= 64:
        # a handful of windows (the online path): merge their row intervals in Python
        # instead of the coverage count below (the same rows)
        runs: list[list[int]] = []
        for q in sorted(pos.tolist()):
            a, b = max(q - w + 1, 0), q
            if b < a:
                continue
            if runs and a <= runs[-1][1] + 1:
                if b > runs[-1][1]:
                    runs[-1][1] = b
            else:
                runs.append([a, b])
        if not runs:
            return np.empty(0, dtype=np.int64)
        if len(runs) == 1:
            return np.arange(runs[0][0], runs[0][1] + 1, dtype=np.int64)
        return np.concatenate([np.arange(a, b + 1, dtype=np.int64) for a, b in runs])
    lo = max(int(pos.min()) - w + 1, 0)
    hi = int(pos.max())
    if hi < lo:
        return np.empty(0, dtype=np.int64)
    cover = np.zeros(hi - lo + 2, dtype=np.int64)  # +1 where a window starts, -1 after it
    np.add.at(cover, np.maximum(pos - w + 1 - lo, 0), 1)
    np.add.at(cover, np.maximum(pos + 1 - lo, 0), -1)
    return lo + np.flatnonzero(np.cumsum(cover[:-1]) > 0)


def on_rows(n: int, rows: Arr, values: Arr) -> Arr:
    """A length-``n`` series holding ``values`` at ``rows`` and NaN elsewhere."""
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def corr_pt(x: Arr, y: Arr, w: int, pos: Arr) -> Arr:
    """:func:`rolling_corr` at ``pos`` (centred two-pass sums over each window; numpy's
    mean / sum / clip steps as direct ufunc calls)."""
    a = windows_at(x, w, pos)
    b = windows_at(y, w, pos)
    a = a - _add_reduce(a, 1, keepdims=True) / w  # a.mean(axis=1, keepdims=True)
    b = b - _add_reduce(b, 1, keepdims=True) / w
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(_add_reduce(a * a, 1) * _add_reduce(b * b, 1))
        out = _add_reduce(a * b, 1) / den
    out[~(den > 1e-30)] = np.nan
    return _clip(out, -1.0, 1.0)  # np.clip's ufunc


_clip = importlib.import_module("numpy._core.umath").clip  # the ufunc np.clip calls
