"""BQX momentum (40 features, lagged).

``bqx_w(t) = mean_{i=1..w} ln(close_t / close_{t-i})``: positive when price rose. With
``d_i = ln(close_t/close_{t-i})``, per window w in 15, 30, 45, 60, 75:

* ``w{w}_ret``  = d_w, the window's log return
* ``w{w}_max``  = max_i d_i,  ``w{w}_min`` = min_i d_i
* ``w{w}_avg``  = mean_i d_i = bqx_w(t) (the target is ``w60_avg`` 60 bars ahead)
* ``w{w}_std``  = std_i d_i (population)
* ``w{w}_end``  = bqx_w(t) - bqx_w(t-w), the change of BQX over one window

``agg_*`` summarise the term structure of the five bqx_w(t) values (mean, std, min, max,
OLS slope against w in log-return per bar, curvature bqx_75 - 2 bqx_45 + bqx_15, fraction
positive); plus ``bqx_ret1`` (last bar's log return), ``bqx_vol_adj_60`` (bqx_60 over the
60-bar return volatility scaled to the window) and ``bqx_accel_60`` (bqx_60(t) - bqx_60(t-15)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bqx.features._ops import (
    _ref,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    row_mean,
    row_std,
    safe_div,
    shift,
    std_at,
    windows_at,
)
from bqx.features.context import Ctx, Family, Spec

WINDOWS = (15, 30, 45, 60, 75)
WMAX = max(WINDOWS)
STATS = ("ret", "max", "min", "avg", "std", "end")
AGG = ("mean", "std", "min", "max", "slope", "curv", "pos_frac")

_DESC = {
    "ret": "ln(close_t/close_{t-w})",
    "max": "max_{i<=w} ln(close_t/close_{t-i})",
    "min": "min_{i<=w} ln(close_t/close_{t-i})",
    "avg": "bqx_w = mean_{i<=w} ln(close_t/close_{t-i})",
    "std": "std_{i<=w} ln(close_t/close_{t-i})",
    "end": "bqx_w(t) - bqx_w(t-w)",
}
_AGG_DESC = {
    "mean": "mean of bqx_w over w in 15..75",
    "std": "std of bqx_w over the 5 windows",
    "min": "min of bqx_w over the 5 windows",
    "max": "max of bqx_w over the 5 windows",
    "slope": "OLS slope of bqx_w against w",
    "curv": "bqx_75 - 2 bqx_45 + bqx_15",
    "pos_frac": "fraction of the 5 windows with bqx_w > 0",
}


def _specs() -> tuple[Spec, ...]:
    out = []
    for w in WINDOWS:
        for s in STATS:
            out.append(Spec(f"w{w}_{s}", "bqx", f"{_DESC[s]} (w={w})", 2 * w if s == "end" else w))
    for a in AGG:
        out.append(Spec(f"agg_{a}", "bqx", _AGG_DESC[a], WMAX))
    out.append(Spec("bqx_ret1", "bqx", "ln(close_t/close_{t-1})", 1))
    out.append(
        Spec("bqx_vol_adj_60", "bqx", "bqx_60 / (std of 60 one-bar log returns * sqrt(60))", 60)
    )
    out.append(Spec("bqx_accel_60", "bqx", "bqx_60(t) - bqx_60(t-15)", 75))
    return tuple(out)


def _series(ctx: Ctx) -> dict[tuple[str, int], np.ndarray]:
    """All per-window statistics as full series over the context (O(n) each)."""

    def f() -> dict[tuple[str, int], np.ndarray]:
        z = ctx.lc - _ref(ctx.lc)  # log prices relative to the context's first bar
        out: dict[tuple[str, int], np.ndarray] = {}
        for w in WINDOWS:
            prev_mean = shift(rolling_mean(z, w), 1)  # mean of ln close over t-w .. t-1
            out[("ret", w)] = z - shift(z, w)
            out[("max", w)] = z - shift(rolling_min(z, w), 1)
            out[("min", w)] = z - shift(rolling_max(z, w), 1)
            avg = z - prev_mean
            out[("avg", w)] = avg
            out[("std", w)] = shift(rolling_std(z, w), 1)
            out[("end", w)] = avg - shift(avg, w)
        return out

    return ctx.memo("bqx_series", f)  # type: ignore[arg-type,return-value]


def bqx_avg(ctx: Ctx, w: int) -> np.ndarray:
    """bqx_w as a full series over the context."""
    if w in WINDOWS:
        return _series(ctx)[("avg", w)]
    z = ctx.lc - _ref(ctx.lc)
    return z - shift(rolling_mean(z, w), 1)


def bqx_avg_at(lc: np.ndarray, w: int, pos: np.ndarray) -> np.ndarray:
    """bqx_w at ``pos`` (NaN where history is short): the target's definition."""
    z = lc - _ref(lc)
    full = z - shift(rolling_mean(z, w), 1)
    out = np.full(len(pos), np.nan)
    ok = (pos >= 0) & (pos < len(lc))
    out[ok] = full[pos[ok]]
    return out


def _block_at(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """(m, 5 windows, 6 stats) at ``pos``: full series in batch, gathered windows online."""
    m = len(pos)
    out = np.empty((m, len(WINDOWS), len(STATS)))
    if len(pos) * 16 >= ctx.n:
        ser = _series(ctx)
        before = pos < 0  # before the first row: no history (a negative index would wrap)
        at = np.where(before, 0, pos)
        for k, w in enumerate(WINDOWS):
            for j, st in enumerate(STATS):
                out[:, k, j] = ser[(st, w)][at]
        out[before] = np.nan
        return out
    z = ctx.lc - _ref(ctx.lc)
    lags = np.concatenate([pos] + [pos - w for w in WINDOWS])
    win = windows_at(z, WMAX + 1, lags)
    prev = win[:, -2::-1]  # column i-1 holds z[t-i], i = 1..75
    d = win[:, -1:] - prev  # d_i = ln(close_t / close_{t-i})
    for k, w in enumerate(WINDOWS):
        avg_all = d[:, :w].mean(axis=1)
        out[:, k, 0] = d[:m, w - 1]
        out[:, k, 1] = d[:m, :w].max(axis=1)
        out[:, k, 2] = d[:m, :w].min(axis=1)
        out[:, k, 3] = avg_all[:m]
        out[:, k, 4] = prev[:m, :w].std(axis=1)
        out[:, k, 5] = avg_all[:m] - avg_all[m * (k + 1) : m * (k + 2)]
    return out


def avg_at(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """bqx_w at ``pos`` for the 5 windows: (m, 5)."""
    return _block_at(ctx, pos)[:, :, STATS.index("avg")]


def avg_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    """bqx_w at the few rows ``pos`` for the 5 windows: (m, 5), with the arithmetic of
    :func:`_block_at`'s online branch but without the other statistics."""
    z = ctx.lc - _ref(ctx.lc)
    win = windows_at(z, WMAX + 1, pos)
    d = win[:, -1:] - win[:, -2::-1]
    return np.stack([d[:, :w].mean(axis=1) for w in WINDOWS], axis=1)


def compute(ctx: Ctx, pos: np.ndarray, accel: bool = True) -> np.ndarray:
    """All 40 at ``pos``; without ``accel`` the last one (bqx_accel_60, which needs a second
    block of windows 15 bars earlier) is left NaN."""
    blk = _block_at(ctx, pos)
    m = len(pos)
    out = np.empty((m, len(WINDOWS) * len(STATS) + len(AGG) + 3))
    k = len(WINDOWS) * len(STATS)
    out[:, :k] = blk.reshape(m, k)
    avg = blk[:, :, STATS.index("avg")]
    wv = np.array(WINDOWS, dtype=float)
    wc = wv - wv.mean()
    out[:, k + 0] = avg.mean(axis=1)
    out[:, k + 1] = avg.std(axis=1)
    out[:, k + 2] = avg.min(axis=1)
    out[:, k + 3] = avg.max(axis=1)
    out[:, k + 4] = (avg * wc).sum(axis=1) / (wc * wc).sum()
    i15, i45, i60, i75 = (WINDOWS.index(w) for w in (15, 45, 60, 75))
    out[:, k + 5] = avg[:, i75] - 2 * avg[:, i45] + avg[:, i15]
    pos_frac = (avg > 0).mean(axis=1)
    pos_frac[np.isnan(avg).any(axis=1)] = np.nan
    out[:, k + 6] = pos_frac
    b = k + len(AGG)
    out[:, b + 0] = ctx.r[pos]
    out[:, b + 1] = safe_div(avg[:, i60], std_at(ctx.r, 60, pos) * np.sqrt(60.0))
    if not accel:
        out[:, b + 2] = np.nan
        return out
    prev60 = _block_at(ctx, pos - 15)[:, i60, STATS.index("avg")] if m else np.empty(0)
    out[:, b + 2] = avg[:, i60] - prev60
    return out


_MAX = np.maximum.reduce
_MIN = np.minimum.reduce
_N_BLOCK = len(WINDOWS) * len(STATS)
_I60 = WINDOWS.index(60)


def _online_block(
    ctx: Ctx, pos: np.ndarray, cells: set[tuple[int, int]]
) -> dict[tuple[int, int], np.ndarray]:
    """The (window k, statistic j) ``cells`` of :func:`_block_at`'s online branch at ``pos``,
    each with the same arithmetic (numpy's mean/std steps as ufunc calls): only the asked
    statistics, and the gathered windows only at the rows they read."""
    m = len(pos)
    z = ctx.lc - _ref(ctx.lc)
    ends = sorted({k for k, j in cells if j == 5})  # ``end`` reads the windows w rows back
    lags = np.concatenate([pos] + [pos - WINDOWS[k] for k in ends]) if ends else pos
    win = windows_at(z, WMAX + 1, lags)
    prev = win[:, -2::-1]  # column i-1 holds z[t-i], i = 1..75
    d = win[:, -1:] - prev  # d_i = ln(close_t / close_{t-i})
    out: dict[tuple[int, int], np.ndarray] = {}
    for k, j in sorted(cells):
        w = WINDOWS[k]
        if j == 0:
            out[k, j] = d[:m, w - 1]
        elif j == 1:
            out[k, j] = _MAX(d[:m, :w], 1)
        elif j == 2:
            out[k, j] = _MIN(d[:m, :w], 1)
        elif j == 3:
            out[k, j] = row_mean(d[:m, :w])
        elif j == 4:
            out[k, j] = row_std(prev[:m, :w])
        else:
            i = ends.index(k) + 1
            out[k, j] = row_mean(d[:m, :w]) - row_mean(d[m * i : m * (i + 1), :w])
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The asked columns at the few rows ``pos``, with the arithmetic of :func:`compute`
    (its online branch of :func:`_block_at`): only the (window, statistic) cells they read.
    Every value is a row-wise reduction over its own gathered window, so it does not depend
    on the other rows or columns asked for."""
    idx = list(idx)
    m = len(pos)
    if m * 16 >= ctx.n:  # a short context: compute()'s batch branch, as before
        return compute(ctx, pos, _N_SPECS - 1 in idx)[:, idx]
    avg_all = any(i >= _N_BLOCK for i in idx)  # agg_*, vol_adj and accel read bqx_w
    cells = {divmod(i, len(STATS)) for i in idx if i < _N_BLOCK}
    if avg_all:
        cells |= {(k, 3) for k in range(len(WINDOWS))}
    blk = _online_block(ctx, pos, cells)
    out = np.empty((m, len(idx)))
    avg = None
    if avg_all:
        avg = np.empty((m, len(WINDOWS)))
        for k in range(len(WINDOWS)):
            avg[:, k] = blk[k, 3]
    for c, i in enumerate(idx):
        if i < _N_BLOCK:
            out[:, c] = blk[divmod(i, len(STATS))]
            continue
        assert avg is not None
        a = i - _N_BLOCK
        if a == 0:
            out[:, c] = row_mean(avg)
        elif a == 1:
            out[:, c] = row_std(avg)
        elif a == 2:
            out[:, c] = _MIN(avg, 1)
        elif a == 3:
            out[:, c] = _MAX(avg, 1)
        elif a == 4:
            out[:, c] = _add_reduce(avg * _WC, 1) / _WC2
        elif a == 5:
            out[:, c] = avg[:, _I75] - 2 * avg[:, _I45] + avg[:, _I15]
        elif a == 6:
            pos_frac = _add_reduce(avg > 0, 1, np.float64) / len(WINDOWS)  # (avg > 0).mean(1)
            pos_frac[np.isnan(avg).any(axis=1)] = np.nan
            out[:, c] = pos_frac
        elif a == 7:
            out[:, c] = ctx.r[pos]
        elif a == 8:
            out[:, c] = safe_div(avg[:, _I60], std_at(ctx.r, 60, pos) * np.sqrt(60.0))
        else:
            prev60 = _block_at(ctx, pos - 15)[:, _I60, STATS.index("avg")]
            out[:, c] = avg[:, _I60] - prev60
    return out


_add_reduce = np.add.reduce
_WV = np.array(WINDOWS, dtype=float)
_WC = _WV - _WV.mean()
_WC2 = (_WC * _WC).sum()
_I15, _I45, _I75 = (WINDOWS.index(w) for w in (15, 45, 75))


_N_SPECS = len(_specs())

FAMILY = Family("bqx", True, _specs(), compute, compute_online=compute_online)
