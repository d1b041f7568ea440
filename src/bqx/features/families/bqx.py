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

import math
from collections.abc import Sequence

import numpy as np

from bqx.features._jit import kernel
from bqx.features._kern_sums import (
    I64_0,
    I64_60,
    np_max,
    np_min,
    np_pairwise_sum,
    np_std,
    point_rows,
    spec_index,
)
from bqx.features._ops import (
    _ref,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
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


_N_BLOCK = len(WINDOWS) * len(STATS)
_I60 = WINDOWS.index(60)


@kernel
def bqx_avg_point(lc: np.ndarray, ref: float, t: int, w: int, d: np.ndarray) -> float:
    """bqx_w at row ``t``: the mean of ``d_i = z_t - z_{t-i}``, i = 1..w (z = lc - ref,
    NaN for rows before the first, as :func:`_block_at`'s gathered window), with numpy's
    arithmetic; ``d`` is scratch."""
    zt = lc[t] - ref if t >= 0 else np.nan
    for i in range(1, w + 1):
        q = t - i
        d[i - 1] = zt - (lc[q] - ref if q >= 0 else np.nan)
    return np_pairwise_sum(d, I64_0, w) / w


@kernel
def bqx_point_kernel(
    lc: np.ndarray, ref: float, r: np.ndarray, pos: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """The specs ``idx`` at the rows ``pos``: ``(len(pos), len(idx))``, each value with the
    arithmetic of :func:`_block_at`'s online branch and :func:`compute` (numpy's pairwise
    sums, its std steps, max/min with NaN), from the window it reads only. ``r``: the
    context's one-bar returns (read by ``bqx_ret1`` and ``bqx_vol_adj_60`` only)."""
    nw = _WIN.shape[0]
    ns = 6
    nb = nw * ns
    m = pos.shape[0]
    k = idx.shape[0]
    out = np.empty((m, k))
    wmax = 75
    d = np.empty(wmax)
    prev = np.empty(wmax)
    tmp = np.empty(wmax)
    rw = np.empty(60)
    avg = np.empty(nw)
    need_avg = False
    for c in range(k):
        if idx[c] >= nb:
            need_avg = True
    for row in range(m):
        t = pos[row]
        if need_avg:
            for j in range(nw):
                avg[j] = bqx_avg_point(lc, ref, t, _WIN[j], d)
        for c in range(k):
            i = idx[c]
            if i < nb:
                j = i // ns
                s = i % ns
                w = _WIN[j]
                zt = lc[t] - ref  # the gathered window: d_i = z_t - z_{t-i}, prev_i = z_{t-i}
                for q in range(1, w + 1):
                    zq = lc[t - q] - ref if t - q >= 0 else np.nan
                    prev[q - 1] = zq
                    d[q - 1] = zt - zq
                if s == 0:
                    v = d[w - 1]
                elif s == 1:
                    v = np_max(d, w)
                elif s == 2:
                    v = np_min(d, w)
                elif s == 3:
                    v = np_pairwise_sum(d, I64_0, w) / w
                elif s == 4:
                    v = np_std(prev, w, tmp)
                else:
                    now = np_pairwise_sum(d, I64_0, w) / w  # before d is refilled
                    v = now - bqx_avg_point(lc, ref, t - w, w, d)
                out[row, c] = v
                continue
            a = i - nb
            if a == 0:  # agg_mean
                v = np_pairwise_sum(avg, I64_0, nw) / nw
            elif a == 1:  # agg_std
                v = np_std(avg, nw, tmp)
            elif a == 2:
                v = np_min(avg, nw)
            elif a == 3:
                v = np_max(avg, nw)
            elif a == 4:  # agg_slope: (avg * wc).sum() / (wc * wc).sum()
                for j in range(nw):
                    tmp[j] = avg[j] * _WC_K[j]
                v = np_pairwise_sum(tmp, I64_0, nw) / _WC2_K
            elif a == 5:  # agg_curv
                v = avg[_I75_K] - 2 * avg[_I45_K] + avg[_I15_K]
            elif a == 6:  # agg_pos_frac (NaN when one bqx_w is NaN)
                bad = False
                for j in range(nw):
                    tmp[j] = 1.0 if avg[j] > 0 else 0.0
                    bad = bad or math.isnan(avg[j])
                v = np.nan if bad else np_pairwise_sum(tmp, I64_0, nw) / nw
            elif a == 7:  # bqx_ret1
                v = r[t]
            elif a == 8:  # bqx_vol_adj_60: safe_div(bqx_60, std of 60 returns * sqrt(60))
                for q in range(60):
                    p = t - 59 + q
                    rw[q] = r[p] if p >= 0 else np.nan
                v = avg[_I60] / (np_std(rw, I64_60, tmp) * math.sqrt(60.0))
                if not math.isfinite(v):
                    v = np.nan
            else:  # bqx_accel_60
                v = avg[_I60] - bqx_avg_point(lc, ref, t - 15, I64_60, d)
            out[row, c] = v
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The asked columns at the few rows ``pos``: :func:`bqx_point_kernel`, the arithmetic
    of :func:`compute`'s online branch value by value. Every value is a reduction over its
    own gathered window, so it does not depend on the other rows or columns asked for."""
    m = len(pos)
    if m * 16 >= ctx.n:  # a short context: compute()'s batch branch, as before
        idx = list(idx)
        return compute(ctx, pos, _N_SPECS - 1 in idx)[:, idx]
    ix = spec_index(idx)
    r = ctx.r if _reads_r(ix) else ctx.lc  # a placeholder when no return is read
    return bqx_point_kernel(ctx.lc, _ref(ctx.lc), r, point_rows(pos), ix)


def _reads_r(ix: np.ndarray) -> bool:
    hit = _READS_R.get(id(ix))
    if hit is None or hit[0] is not ix:
        if len(_READS_R) > 1024:
            _READS_R.clear()
        hit = _READS_R[id(ix)] = (ix, bool(np.isin(ix, (_N_BLOCK + 7, _N_BLOCK + 8)).any()))
    return hit[1]


_READS_R: dict[int, tuple[np.ndarray, bool]] = {}
_WIN = np.array(WINDOWS, dtype=np.int64)
_WV = np.array(WINDOWS, dtype=float)
_WC = _WV - _WV.mean()
_WC2 = (_WC * _WC).sum()
_I15, _I45, _I75 = (WINDOWS.index(w) for w in (15, 45, 75))
_WC_K, _WC2_K = _WC, float(_WC2)
_I15_K, _I45_K, _I75_K = _I15, _I45, _I75


_N_SPECS = len(_specs())

FAMILY = Family("bqx", True, _specs(), compute, compute_online=compute_online)
