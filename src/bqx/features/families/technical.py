"""Technical indicators (45 features, lagged), textbook definitions.

Wilder smoothing (RMA, alpha = 1/n) for RSI, ATR, ADX/DI; EMA with alpha = 2/(span+1)
elsewhere; both truncated to a finite window whose neglected weight is < 1e-9 (see
:mod:`bqx.features._ops`). Price-unit indicators are divided by close so that values are
comparable across pairs (e.g. ``macd`` is (EMA12 - EMA26) / close).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

from bqx.features._ops import (
    bars_since_max,
    bars_since_max_pt,
    bars_since_min,
    bars_since_min_pt,
    ema,
    ema_pt,
    ema_pt_many,
    ema_window,
    max_pt,
    mean_pt,
    min_pt,
    on_rows,
    rolling,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_sum,
    rows_before,
    safe_div,
    shift,
    span_alpha,
    sum_pt,
    wilder,
    wilder_pt,
    windows_at,
)
from bqx.features.context import Ctx, Family, Spec

W14 = ema_window(1 / 14)
W7 = ema_window(1 / 7)
W28 = ema_window(1 / 28)


def _ew(span: float) -> int:
    return ema_window(span_alpha(span))


# name, description, lookback
_TABLE: list[tuple[str, str, int]] = [
    ("rsi_7", "Wilder RSI(7)", W7),
    ("rsi_14", "Wilder RSI(14)", W14),
    ("rsi_28", "Wilder RSI(28)", W28),
    ("macd", "(EMA12 - EMA26) / close", _ew(26)),
    ("macd_signal", "EMA9 of (EMA12 - EMA26), / close", _ew(26) + _ew(9)),
    ("macd_hist", "(MACD - signal) / close", _ew(26) + _ew(9)),
    ("stoch_k_14", "100 (close - LL14) / (HH14 - LL14)", 13),
    ("stoch_d_14", "SMA3 of stoch_k_14", 15),
    ("adx_14", "Wilder ADX(14)", 2 * W14 + 1),
    ("plus_di_14", "Wilder +DI(14)", W14 + 1),
    ("minus_di_14", "Wilder -DI(14)", W14 + 1),
    ("cci_20", "(TP - SMA20 TP) / (0.015 * mean abs dev)", 19),
    ("willr_28", "-100 (HH28 - close) / (HH28 - LL28)", 27),
    ("natr_14", "100 ATR(14) / close (Wilder)", W14 + 1),
    ("natr_28", "100 ATR(28) / close (Wilder)", W28 + 1),
    ("ema_ratio_10", "close / EMA10 - 1", _ew(10)),
    ("ema_ratio_20", "close / EMA20 - 1", _ew(20)),
    ("ema_ratio_50", "close / EMA50 - 1", _ew(50)),
    ("ema_ratio_100", "close / EMA100 - 1", _ew(100)),
    ("sma_ratio_10", "close / SMA10 - 1", 9),
    ("sma_ratio_20", "close / SMA20 - 1", 19),
    ("sma_ratio_50", "close / SMA50 - 1", 49),
    ("sma_ratio_100", "close / SMA100 - 1", 99),
    ("sma_ratio_200", "close / SMA200 - 1", 199),
    ("roc_5", "close / close_{t-5} - 1", 5),
    ("roc_10", "close / close_{t-10} - 1", 10),
    ("roc_20", "close / close_{t-20} - 1", 20),
    ("roc_120", "close / close_{t-120} - 1", 120),
    ("sma_cross_50_200", "SMA50 / SMA200 - 1", 199),
    ("ema_cross_10_50", "EMA10 / EMA50 - 1", _ew(50)),
    ("stochrsi_14", "(RSI14 - min14 RSI14) / (max14 - min14)", W14 + 14),
    ("mfi_14", "money flow index (14) on tick volume", 14),
    ("aroon_up_25", "100 (25 - bars since 26-bar high) / 25", 25),
    ("aroon_down_25", "100 (25 - bars since 26-bar low) / 25", 25),
    ("ultosc", "ultimate oscillator (7, 14, 28)", 28),
    ("trix_15", "1e4 * one-bar change of triple EMA15 of close", 3 * _ew(15) + 1),
    ("keltner_pos", "(close - EMA20) / (2 ATR10)", max(_ew(20), ema_window(0.1) + 1)),
    ("donchian_pos_55", "(close - LL55) / (HH55 - LL55)", 54),
    ("dpo_20", "(close - SMA20 shifted 11 bars) / close", 30),
    ("tenkan_dev", "(close - (HH9 + LL9) / 2) / close", 8),
    ("kijun_dev", "(close - (HH26 + LL26) / 2) / close", 25),
    ("elder_bull_13", "(high - EMA13) / close", _ew(13)),
    ("elder_bear_13", "(low - EMA13) / close", _ew(13)),
    ("cmo_14", "Chande momentum oscillator (14), simple sums", 14),
    ("vortex_diff_14", "(VI+ - VI-) over 14 bars", 14),
]


def _specs() -> tuple[Spec, ...]:
    needs = {"mfi_14": ("volume",)}
    return tuple(Spec(n, "technical", d, lb, needs.get(n, ())) for n, d, lb in _TABLE)


# ---- shared intermediates (memoised on the context) ------------------------------------
def ema_close(ctx: Ctx, span: float) -> np.ndarray:
    return ctx.memo(("ema_c", span), lambda: ema(ctx.c, span_alpha(span)))


def sma_close(ctx: Ctx, w: int) -> np.ndarray:
    return ctx.memo(("sma_c", w), lambda: rolling_mean(ctx.c, w))


def true_range(ctx: Ctx) -> np.ndarray:
    def f(ctx: Ctx) -> np.ndarray:
        pc = shift(ctx.c, 1)
        # np.maximum.reduce([h - l, |h - pc|, |l - pc|]) without stacking the three: the
        # same elementwise maxima in the same order
        tr = ctx.h - ctx.l
        b = ctx.h - pc
        np.maximum(tr, np.abs(b, out=b), out=tr)
        np.subtract(ctx.l, pc, out=b)
        np.maximum(tr, np.abs(b, out=b), out=tr)
        return tr

    return ctx.series("tr", f)


def atr(ctx: Ctx, n: int) -> np.ndarray:
    return ctx.memo(("atr", n), lambda: wilder(true_range(ctx), n))


def rsi(ctx: Ctx, n: int) -> np.ndarray:
    def f() -> np.ndarray:
        d = ctx.c - shift(ctx.c, 1)
        g = wilder(np.maximum(d, 0.0), n)
        lo = wilder(np.maximum(-d, 0.0), n)
        return 100.0 * safe_div(g, g + lo)

    return ctx.memo(("rsi", n), f)


def hh(ctx: Ctx, w: int) -> np.ndarray:
    return ctx.memo(("hh", w), lambda: rolling_max(ctx.h, w))


def ll(ctx: Ctx, w: int) -> np.ndarray:
    return ctx.memo(("ll", w), lambda: rolling_min(ctx.l, w))


def adx(ctx: Ctx, n: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ADX, +DI, -DI), Wilder."""

    def f() -> np.ndarray:
        up = ctx.h - shift(ctx.h, 1)
        dn = shift(ctx.l, 1) - ctx.l
        nan = np.isnan(up) | np.isnan(dn)
        pdm = np.where((up > dn) & (up > 0), up, 0.0)
        mdm = np.where((dn > up) & (dn > 0), dn, 0.0)
        pdm[nan] = np.nan
        mdm[nan] = np.nan
        tr = wilder(true_range(ctx), n)
        pdi = 100.0 * safe_div(wilder(pdm, n), tr)
        mdi = 100.0 * safe_div(wilder(mdm, n), tr)
        dx = 100.0 * safe_div(np.abs(pdi - mdi), pdi + mdi)
        return np.stack([wilder(dx, n), pdi, mdi])

    a = ctx.memo(("adx", n), f)
    return a[0], a[1], a[2]


def _macd(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    def f() -> np.ndarray:
        macd = ema_close(ctx, 12) - ema_close(ctx, 26)
        return np.stack([macd, ema(macd, span_alpha(9))])

    m = ctx.memo("macd", f)
    return m[0], m[1]


def _k14(ctx: Ctx) -> np.ndarray:
    return ctx.memo("k14", lambda: 100.0 * safe_div(ctx.c - ll(ctx, 14), hh(ctx, 14) - ll(ctx, 14)))


def _tp_of(ctx: Ctx) -> np.ndarray:
    return (ctx.h + ctx.l + ctx.c) / 3.0


def _tp(ctx: Ctx) -> np.ndarray:
    return ctx.series("tp", _tp_of)


def _cci(ctx: Ctx) -> np.ndarray:
    tp = _tp(ctx)
    sma_tp = rolling_mean(tp, 20)
    mad = rolling(
        tp, 20, lambda win, axis=1: np.abs(win - win.mean(axis=1, keepdims=True)).mean(axis=1)
    )
    return safe_div(tp - sma_tp, 0.015 * mad)


def _stochrsi(ctx: Ctx) -> np.ndarray:
    r14 = rsi(ctx, 14)
    rmin, rmax = rolling_min(r14, 14), rolling_max(r14, 14)
    return safe_div(r14 - rmin, rmax - rmin)


def _mfi(ctx: Ctx) -> np.ndarray:
    """Money flow index on tick volume."""
    tp = _tp(ctx)
    tp_prev = shift(tp, 1)
    flow = tp * ctx.v
    up = np.where(tp > tp_prev, flow, 0.0)
    dn = np.where(tp < tp_prev, flow, 0.0)
    bad = np.isnan(tp_prev) | np.isnan(flow)
    up[bad] = np.nan
    dn[bad] = np.nan
    su, sd = rolling_sum(up, 14), rolling_sum(dn, 14)
    return 100.0 * safe_div(su, su + sd)


def _ultosc(ctx: Ctx) -> np.ndarray:
    c, lo = ctx.c, ctx.l
    pc = shift(c, 1)
    bp = c - np.fmin(lo, pc) + 0.0 * pc
    tr = true_range(ctx)
    avgs = [safe_div(rolling_sum(bp, k), rolling_sum(tr, k)) for k in (7, 14, 28)]
    return 100.0 * (4 * avgs[0] + 2 * avgs[1] + avgs[2]) / 7.0


def _trix(ctx: Ctx) -> np.ndarray:
    al = span_alpha(15)
    e3 = ema(ema(ema(ctx.c, al), al), al)
    return 1e4 * (safe_div(e3, shift(e3, 1)) - 1.0)


def _cmo(ctx: Ctx) -> np.ndarray:
    c = ctx.c
    d = c - shift(c, 1)
    gu = rolling_sum(np.maximum(d, 0.0), 14)
    gd = rolling_sum(np.maximum(-d, 0.0), 14)
    return 100.0 * safe_div(gu - gd, gu + gd)


def _vortex(ctx: Ctx) -> np.ndarray:
    h, lo = ctx.h, ctx.l
    vp = rolling_sum(np.abs(h - shift(lo, 1)), 14)
    vm = rolling_sum(np.abs(lo - shift(h, 1)), 14)
    return safe_div(vp - vm, rolling_sum(true_range(ctx), 14))


def _ema_ratio(span: int) -> Callable[[Ctx], np.ndarray]:
    return lambda ctx: safe_div(ctx.c, ema_close(ctx, span)) - 1.0


def _sma_ratio(w: int) -> Callable[[Ctx], np.ndarray]:
    return lambda ctx: safe_div(ctx.c, sma_close(ctx, w)) - 1.0


def _roc(n: int) -> Callable[[Ctx], np.ndarray]:
    return lambda ctx: safe_div(ctx.c, shift(ctx.c, n)) - 1.0


def _rsi(n: int) -> Callable[[Ctx], np.ndarray]:
    return lambda ctx: rsi(ctx, n)


#: One function per feature, in ``_TABLE`` order: the online path evaluates only the
#: features a model uses (:func:`compute_subset`); shared intermediates are memoised on the
#: context, so computing all of them costs what one pass did.
_SERIES: tuple[Callable[[Ctx], np.ndarray], ...] = (
    _rsi(7),
    _rsi(14),
    _rsi(28),
    lambda ctx: safe_div(_macd(ctx)[0], ctx.c),
    lambda ctx: safe_div(_macd(ctx)[1], ctx.c),
    lambda ctx: safe_div(_macd(ctx)[0] - _macd(ctx)[1], ctx.c),
    _k14,
    lambda ctx: rolling_mean(_k14(ctx), 3),
    lambda ctx: adx(ctx, 14)[0],
    lambda ctx: adx(ctx, 14)[1],
    lambda ctx: adx(ctx, 14)[2],
    _cci,
    lambda ctx: -100.0 * safe_div(hh(ctx, 28) - ctx.c, hh(ctx, 28) - ll(ctx, 28)),
    lambda ctx: 100.0 * safe_div(atr(ctx, 14), ctx.c),
    lambda ctx: 100.0 * safe_div(atr(ctx, 28), ctx.c),
    *(_ema_ratio(span) for span in (10, 20, 50, 100)),
    *(_sma_ratio(w) for w in (10, 20, 50, 100, 200)),
    *(_roc(n) for n in (5, 10, 20, 120)),
    lambda ctx: safe_div(sma_close(ctx, 50), sma_close(ctx, 200)) - 1.0,
    lambda ctx: safe_div(ema_close(ctx, 10), ema_close(ctx, 50)) - 1.0,
    _stochrsi,
    _mfi,
    lambda ctx: 100.0 * (25.0 - bars_since_max(ctx.h, 26)) / 25.0,
    lambda ctx: 100.0 * (25.0 - bars_since_min(ctx.l, 26)) / 25.0,
    _ultosc,
    _trix,
    lambda ctx: safe_div(ctx.c - ema_close(ctx, 20), 2.0 * atr(ctx, 10)),
    lambda ctx: safe_div(ctx.c - ll(ctx, 55), hh(ctx, 55) - ll(ctx, 55)),
    lambda ctx: safe_div(ctx.c - shift(sma_close(ctx, 20), 11), ctx.c),
    lambda ctx: safe_div(ctx.c - (hh(ctx, 9) + ll(ctx, 9)) / 2.0, ctx.c),
    lambda ctx: safe_div(ctx.c - (hh(ctx, 26) + ll(ctx, 26)) / 2.0, ctx.c),
    lambda ctx: safe_div(ctx.h - ema_close(ctx, 13), ctx.c),
    lambda ctx: safe_div(ctx.l - ema_close(ctx, 13), ctx.c),
    _cmo,
    _vortex,
)
assert len(_SERIES) == len(_TABLE)


def compute_subset(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The features ``idx`` (positions in ``_TABLE``) at ``pos``: (len(pos), len(idx))."""
    return np.stack([_SERIES[k](ctx)[pos] for k in idx], axis=1)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    return compute_subset(ctx, pos, range(len(_SERIES)))


# ---- the online path: each feature at its rows only --------------------------------------
def _pm(ctx: Ctx, key: object, pos: np.ndarray, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Memo of a value at ``pos`` (shared by the features of one online call)."""
    return ctx.memo((key, pos.tobytes()), fn)


def _at(x: np.ndarray, pos: np.ndarray, lag: int = 0) -> np.ndarray:
    """``x[pos - lag]``, NaN before the first row."""
    p = pos - lag
    out = x[np.maximum(p, 0)]
    if lag and (p < 0).any():
        out = out.copy()
        out[p < 0] = np.nan
    return out


def _ema_c_pt(ctx: Ctx, span: float, pos: np.ndarray) -> np.ndarray:
    return _pm(ctx, ("ema_c_pt", span), pos, lambda: ema_pt(ctx.c, span_alpha(span), pos))


def _sma_c_pt(ctx: Ctx, w: int, pos: np.ndarray) -> np.ndarray:
    """SMA(w) of close at ``pos`` (shared by sma_ratio_w and sma_cross_50_200)."""
    return _pm(ctx, ("sma_c_pt", w), pos, lambda: mean_pt(ctx.c, w, pos))


def _hh_pt(ctx: Ctx, w: int, pos: np.ndarray) -> np.ndarray:
    return _pm(ctx, ("hh_pt", w), pos, lambda: max_pt(ctx.h, w, pos))


def _ll_pt(ctx: Ctx, w: int, pos: np.ndarray) -> np.ndarray:
    return _pm(ctx, ("ll_pt", w), pos, lambda: min_pt(ctx.l, w, pos))


def _diff_c(ctx: Ctx) -> np.ndarray:
    return ctx.series("diff_c", lambda c: c.c - shift(c.c, 1))


def _gain_loss(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    """max(d, 0) and max(-d, 0) of the close differences (shared by the RSIs of a call)."""

    def f(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
        d = _diff_c(ctx)
        return np.maximum(d, 0.0), np.maximum(-d, 0.0)

    return ctx.series("gain_loss", f)


def _rsi_pt(n: int) -> Callable[[Ctx, np.ndarray], np.ndarray]:
    def f(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
        gain, loss = _gain_loss(ctx)
        g = wilder_pt(gain, n, pos)
        lo = wilder_pt(loss, n, pos)
        return 100.0 * safe_div(g, g + lo)

    return f


def _macd_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    return _pm(ctx, "macd_pt", pos, lambda: _ema_c_pt(ctx, 12, pos) - _ema_c_pt(ctx, 26, pos))


def _ema_run(x: np.ndarray, alpha: float, lo: int, hi: int) -> np.ndarray:
    """``ema_pt(x, alpha, np.arange(lo, hi + 1))`` for a run of more than 64 rows, ``lo >=
    0``: its filter over the rows the windows cover, the run as a slice (the same values)."""
    w = ema_window(alpha)
    a = max(lo - w + 1, 0)
    return ema(x[a : hi + 1], alpha, w)[lo - a : hi + 1 - a]


def _signal_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    def f() -> np.ndarray:
        al = span_alpha(9)
        w9 = ema_window(al)
        ps = sorted(pos.tolist())
        lo, hi = ps[0] - w9 + 1, ps[-1]
        if lo >= 0 and hi - lo + 1 > 64 and all(b - a <= w9 for a, b in pairwise(ps)):
            # the windows of the EMA9 make one run of rows (t and its lags: the usual
            # case): the MACD on that run from slices of the two filters, and the windows
            # gathered from it, the same elements as from the NaN-padded series below
            m = _ema_run(ctx.c, span_alpha(12), lo, hi) - _ema_run(ctx.c, span_alpha(26), lo, hi)
            return ema_pt(m, al, pos - lo)
        rows = rows_before(pos, w9)  # the MACD series where the EMA9 reads it
        m = ema_pt(ctx.c, span_alpha(12), rows) - ema_pt(ctx.c, span_alpha(26), rows)
        return ema_pt(on_rows(ctx.n, rows, m), al, pos)

    return _pm(ctx, "signal_pt", pos, f)


def _k14_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    ll14, hh14 = _ll_pt(ctx, 14, pos), _hh_pt(ctx, 14, pos)
    return 100.0 * safe_div(ctx.c[pos] - ll14, hh14 - ll14)


def _stoch_d_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    rows = rows_before(pos, 3)
    return mean_pt(on_rows(ctx.n, rows, _k14_pt(ctx, rows)), 3, pos)


def _dm(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    def f(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
        h, lo = ctx.h, ctx.l
        # up = h - shift(h, 1), dn = shift(l, 1) - l: the same differences, NaN at row 0
        up, dn = np.empty(ctx.n), np.empty(ctx.n)
        up[0] = dn[0] = np.nan
        np.subtract(h[1:], h[:-1], out=up[1:])
        np.subtract(lo[:-1], lo[1:], out=dn[1:])
        nan = np.isnan(up) | np.isnan(dn)
        pdm = np.where((up > dn) & (up > 0), up, 0.0)
        mdm = np.where((dn > up) & (dn > 0), dn, 0.0)
        pdm[nan] = np.nan
        mdm[nan] = np.nan
        return pdm, mdm

    return ctx.series("dm", f)


def di_pt(ctx: Ctx, pos: np.ndarray, n: int = 14) -> tuple[np.ndarray, np.ndarray]:
    def f() -> np.ndarray:
        pdm, mdm = _dm(ctx)
        # wilder_pt of the three series (one filter call for a long run of rows)
        tr, wp, wm = ema_pt_many([true_range(ctx), pdm, mdm], 1.0 / n, pos)
        return np.stack([100.0 * safe_div(wp, tr), 100.0 * safe_div(wm, tr)])

    a = _pm(ctx, ("di_pt", n), pos, f)
    return a[0], a[1]


def adx_pt(ctx: Ctx, pos: np.ndarray, n: int = 14) -> np.ndarray:
    """ADX(n) at ``pos``: the Wilder average of DX over the rows it reads."""

    def f() -> np.ndarray:
        rows = rows_before(pos, ema_window(1.0 / n))
        pdi, mdi = di_pt(ctx, rows, n)
        dx = 100.0 * safe_div(np.abs(pdi - mdi), pdi + mdi)
        return wilder_pt(on_rows(ctx.n, rows, dx), n, pos)

    return _pm(ctx, ("adx_pt", n), pos, f)


def _cci_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    win = windows_at(_tp(ctx), 20, pos)
    mean = win.mean(axis=1)
    mad = np.abs(win - mean[:, None]).mean(axis=1)
    return safe_div(_tp(ctx)[pos] - mean, 0.015 * mad)


def _stochrsi_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    rows = rows_before(pos, 14)
    r14 = on_rows(ctx.n, rows, _rsi_pt(14)(ctx, rows))
    rmin, rmax = min_pt(r14, 14, pos), max_pt(r14, 14, pos)
    return safe_div(r14[pos] - rmin, rmax - rmin)


def _mfi_flows(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    def f(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
        tp = _tp(ctx)
        tp_prev = shift(tp, 1)
        flow = tp * ctx.v
        up = np.where(tp > tp_prev, flow, 0.0)
        dn = np.where(tp < tp_prev, flow, 0.0)
        bad = np.isnan(tp_prev) | np.isnan(flow)
        up[bad] = np.nan
        dn[bad] = np.nan
        return up, dn

    return ctx.series("mfi_flows", f)


def _mfi_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    up, dn = _mfi_flows(ctx)
    su, sd = sum_pt(up, 14, pos), sum_pt(dn, 14, pos)
    return 100.0 * safe_div(su, su + sd)


def _ultosc_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    pc = shift(ctx.c, 1)
    bp = ctx.c - np.fmin(ctx.l, pc) + 0.0 * pc
    tr = true_range(ctx)
    avgs = [safe_div(sum_pt(bp, k, pos), sum_pt(tr, k, pos)) for k in (7, 14, 28)]
    return 100.0 * (4 * avgs[0] + 2 * avgs[1] + avgs[2]) / 7.0


def _trix_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    al = span_alpha(15)
    w = ema_window(al)
    r3 = rows_before(np.concatenate([pos, pos - 1]), 1)  # the triple EMA at t and t-1
    r2 = rows_before(r3, w)
    r1 = rows_before(r2, w)
    e1 = on_rows(ctx.n, r1, ema_pt(ctx.c, al, r1))
    e2 = on_rows(ctx.n, r2, ema_pt(e1, al, r2))
    e3 = on_rows(ctx.n, r3, ema_pt(e2, al, r3))
    return 1e4 * (safe_div(e3[pos], _at(e3, pos, 1)) - 1.0)


def _cmo_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    d = _diff_c(ctx)
    gu = sum_pt(np.maximum(d, 0.0), 14, pos)
    gd = sum_pt(np.maximum(-d, 0.0), 14, pos)
    return 100.0 * safe_div(gu - gd, gu + gd)


def _vortex_pt(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    h, lo = ctx.h, ctx.l
    vp = sum_pt(np.abs(h - shift(lo, 1)), 14, pos)
    vm = sum_pt(np.abs(lo - shift(h, 1)), 14, pos)
    return safe_div(vp - vm, sum_pt(true_range(ctx), 14, pos))


def _c(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    return ctx.c[pos]


_PtFn = Callable[[Ctx, np.ndarray], np.ndarray]


def _ema_ratio_pt(span: int) -> _PtFn:
    return lambda ctx, pos: safe_div(_c(ctx, pos), _ema_c_pt(ctx, span, pos)) - 1.0


def _sma_ratio_pt(w: int) -> _PtFn:
    return lambda ctx, pos: safe_div(_c(ctx, pos), _sma_c_pt(ctx, w, pos)) - 1.0


def _roc_pt(n: int) -> _PtFn:
    return lambda ctx, pos: safe_div(_c(ctx, pos), _at(ctx.c, pos, n)) - 1.0


def _natr_pt(n: int) -> _PtFn:
    return lambda ctx, pos: 100.0 * safe_div(wilder_pt(true_range(ctx), n, pos), _c(ctx, pos))


def _mid_dev_pt(w: int) -> _PtFn:
    return lambda ctx, pos: safe_div(
        _c(ctx, pos) - (_hh_pt(ctx, w, pos) + _ll_pt(ctx, w, pos)) / 2.0, _c(ctx, pos)
    )


#: ``_SERIES`` evaluated at the asked rows only (same order).
_POINT: tuple[_PtFn, ...] = (
    _rsi_pt(7),
    _rsi_pt(14),
    _rsi_pt(28),
    lambda ctx, pos: safe_div(_macd_pt(ctx, pos), _c(ctx, pos)),
    lambda ctx, pos: safe_div(_signal_pt(ctx, pos), _c(ctx, pos)),
    lambda ctx, pos: safe_div(_macd_pt(ctx, pos) - _signal_pt(ctx, pos), _c(ctx, pos)),
    _k14_pt,
    _stoch_d_pt,
    adx_pt,
    lambda ctx, pos: di_pt(ctx, pos)[0],
    lambda ctx, pos: di_pt(ctx, pos)[1],
    _cci_pt,
    lambda ctx, pos: (
        -100.0
        * safe_div(_hh_pt(ctx, 28, pos) - _c(ctx, pos), _hh_pt(ctx, 28, pos) - _ll_pt(ctx, 28, pos))
    ),
    _natr_pt(14),
    _natr_pt(28),
    *(_ema_ratio_pt(span) for span in (10, 20, 50, 100)),
    *(_sma_ratio_pt(w) for w in (10, 20, 50, 100, 200)),
    *(_roc_pt(n) for n in (5, 10, 20, 120)),
    lambda ctx, pos: safe_div(_sma_c_pt(ctx, 50, pos), _sma_c_pt(ctx, 200, pos)) - 1.0,
    lambda ctx, pos: safe_div(_ema_c_pt(ctx, 10, pos), _ema_c_pt(ctx, 50, pos)) - 1.0,
    _stochrsi_pt,
    _mfi_pt,
    lambda ctx, pos: 100.0 * (25.0 - bars_since_max_pt(ctx.h, 26, pos)) / 25.0,
    lambda ctx, pos: 100.0 * (25.0 - bars_since_min_pt(ctx.l, 26, pos)) / 25.0,
    _ultosc_pt,
    _trix_pt,
    lambda ctx, pos: safe_div(
        _c(ctx, pos) - _ema_c_pt(ctx, 20, pos),
        2.0 * wilder_pt(true_range(ctx), 10, pos),
    ),
    lambda ctx, pos: safe_div(
        _c(ctx, pos) - _ll_pt(ctx, 55, pos), _hh_pt(ctx, 55, pos) - _ll_pt(ctx, 55, pos)
    ),
    lambda ctx, pos: safe_div(_c(ctx, pos) - mean_pt(ctx.c, 20, pos - 11), _c(ctx, pos)),
    _mid_dev_pt(9),
    _mid_dev_pt(26),
    lambda ctx, pos: safe_div(ctx.h[pos] - _ema_c_pt(ctx, 13, pos), _c(ctx, pos)),
    lambda ctx, pos: safe_div(ctx.l[pos] - _ema_c_pt(ctx, 13, pos), _c(ctx, pos)),
    _cmo_pt,
    _vortex_pt,
)
assert len(_POINT) == len(_TABLE)


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The features ``idx`` at the few rows ``pos`` of an online call."""
    out = np.empty((len(pos), len(idx)))
    for j, k in enumerate(idx):
        out[:, j] = _POINT[k](ctx, pos)
    return out


FAMILY = Family("technical", True, _specs(), compute, compute_subset, compute_online)
