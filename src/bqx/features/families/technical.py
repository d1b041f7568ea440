"""Technical indicators (45 features, lagged), textbook definitions.

Wilder smoothing (RMA, alpha = 1/n) for RSI, ATR, ADX/DI; EMA with alpha = 2/(span+1)
elsewhere; both truncated to a finite window whose neglected weight is < 1e-9 (see
:mod:`bqx.features._ops`). Price-unit indicators are divided by close so that values are
comparable across pairs (e.g. ``macd`` is (EMA12 - EMA26) / close).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bqx.features._jit import kernel
from bqx.features._kern_windows import (
    NAN,
    ema_params,
    ema_rows,
    safe_div1,
    win_max,
    win_min,
    win_sum,
)
from bqx.features._kern_windows import true_range_at as _true_range
from bqx.features._ops import (
    bars_since_max,
    bars_since_min,
    ema,
    ema_window,
    rolling,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_sum,
    safe_div,
    shift,
    span_alpha,
    wilder,
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


# ---- the online path: compiled kernels (bqx.features._jit) -------------------------------
# Each feature at the rows ``pos`` from the rows its window reads, the definitions of
# ``_SERIES`` above (NaN where the series has NaN); the EMAs by ``ema_rows`` over the run of
# rows the call reads (see bqx.features._kern_windows). Every feature is computed by its own
# code path from the context's arrays, so its value does not depend on which other
# features a call asks for.
_P7, _P14, _P28 = ema_params(1 / 7), ema_params(1 / 14), ema_params(1 / 28)
_P9, _P12, _P26 = ema_params(span_alpha(9)), ema_params(span_alpha(12)), ema_params(span_alpha(26))
_P10W = ema_params(0.1)  # Wilder 10 (keltner's ATR)
_PS10, _PS13, _PS15 = (
    ema_params(span_alpha(10)),
    ema_params(span_alpha(13)),
    ema_params(span_alpha(15)),
)
_PS20, _PS50, _PS100 = (
    ema_params(span_alpha(20)),
    ema_params(span_alpha(50)),
    ema_params(span_alpha(100)),
)


@kernel
def _rsi_run(c: np.ndarray, a: int, b: int, p: tuple[float, int, float]) -> np.ndarray:
    """Wilder RSI at rows ``a..b`` (``_SERIES``' rsi): 100 g / (g + l) of the Wilder
    averages of the gains and losses of close."""
    alpha, w, beta = p
    s = a - w + 1
    if s < 0:
        s = 0
    gain = np.empty(b - s + 1)
    loss = np.empty(b - s + 1)
    for i in range(s, b + 1):
        d = c[i] - c[i - 1] if i >= 1 else NAN
        if d != d:
            gain[i - s] = NAN
            loss[i - s] = NAN
        else:
            gain[i - s] = d if d > 0.0 else 0.0
            loss[i - s] = -d if -d > 0.0 else 0.0
    g = ema_rows(gain, s, a, b, alpha, w, beta)
    lo = ema_rows(loss, s, a, b, alpha, w, beta)
    out = np.empty(b - a + 1)
    for i in range(b - a + 1):
        out[i] = 100.0 * safe_div1(g[i], g[i] + lo[i])
    return out


@kernel
def _tr_run(c: np.ndarray, h: np.ndarray, lo: np.ndarray, s: int, b: int) -> np.ndarray:
    out = np.empty(b - s + 1)
    for i in range(s, b + 1):
        out[i - s] = _true_range(c, h, lo, i)
    return out


@kernel
def _atr_run(
    c: np.ndarray, h: np.ndarray, lo: np.ndarray, a: int, b: int, p: tuple[float, int, float]
) -> np.ndarray:
    """Wilder ATR at rows ``a..b``."""
    alpha, w, beta = p
    s = max(a - w + 1, 0)
    return ema_rows(_tr_run(c, h, lo, s, b), s, a, b, alpha, w, beta)


@kernel
def _di_run(
    c: np.ndarray, h: np.ndarray, lo: np.ndarray, a: int, b: int
) -> tuple[np.ndarray, np.ndarray]:
    """(+DI(14), -DI(14)) at rows ``a..b``."""
    alpha, w, beta = _P14
    s = max(a - w + 1, 0)
    pdm = np.empty(b - s + 1)
    mdm = np.empty(b - s + 1)
    for i in range(s, b + 1):
        up = h[i] - h[i - 1] if i >= 1 else NAN
        dn = lo[i - 1] - lo[i] if i >= 1 else NAN
        if up != up or dn != dn:
            pdm[i - s] = NAN
            mdm[i - s] = NAN
        else:
            pdm[i - s] = up if (up > dn and up > 0.0) else 0.0
            mdm[i - s] = dn if (dn > up and dn > 0.0) else 0.0
    tr = ema_rows(_tr_run(c, h, lo, s, b), s, a, b, alpha, w, beta)
    wp = ema_rows(pdm, s, a, b, alpha, w, beta)
    wm = ema_rows(mdm, s, a, b, alpha, w, beta)
    pdi = np.empty(b - a + 1)
    mdi = np.empty(b - a + 1)
    for i in range(b - a + 1):
        pdi[i] = 100.0 * safe_div1(wp[i], tr[i])
        mdi[i] = 100.0 * safe_div1(wm[i], tr[i])
    return pdi, mdi


@kernel
def _adx_run(c: np.ndarray, h: np.ndarray, lo: np.ndarray, a: int, b: int) -> np.ndarray:
    """ADX(14) at rows ``a..b``: the Wilder average of DX over the rows it reads."""
    alpha, w, beta = _P14
    s = max(a - w + 1, 0)
    pdi, mdi = _di_run(c, h, lo, s, b)
    dx = np.empty(b - s + 1)
    for i in range(b - s + 1):
        dx[i] = 100.0 * safe_div1(abs(pdi[i] - mdi[i]), pdi[i] + mdi[i])
    return ema_rows(dx, s, a, b, alpha, w, beta)


@kernel
def _macd_run(c: np.ndarray, a: int, b: int) -> np.ndarray:
    """EMA12 - EMA26 of close at rows ``a..b``."""
    a12, w12, b12 = _P12
    a26, w26, b26 = _P26
    e12 = ema_rows(c, 0, a, b, a12, w12, b12)
    e26 = ema_rows(c, 0, a, b, a26, w26, b26)
    return e12 - e26


@kernel
def _k14_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, t: int) -> float:
    if t < 0:
        return NAN
    ll = win_min(lo, t, 14)
    return 100.0 * safe_div1(c[t] - ll, win_max(h, t, 14) - ll)


@kernel
def _cci_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, t: int) -> float:
    """(TP - mean TP) / (0.015 mean |TP - mean TP|) over the 20 rows ending at ``t``."""
    if t - 19 < 0:
        return NAN
    tp = np.empty(20)
    for i in range(20):
        r = t - 19 + i
        tp[i] = (h[r] + lo[r] + c[r]) / 3.0
    m = 0.0
    for i in range(20):
        m += tp[i]
    m = m / 20.0
    mad = 0.0
    for i in range(20):
        mad += abs(tp[i] - m)
    mad = mad / 20.0
    return safe_div1(tp[19] - m, 0.015 * mad)


@kernel
def _mfi_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, v: np.ndarray, t: int) -> float:
    """Money flow index (14) on tick volume at ``t``."""
    if t - 13 < 1:  # the first window whose every row has a previous typical price
        return NAN
    su = 0.0
    sd = 0.0
    prev = (h[t - 14] + lo[t - 14] + c[t - 14]) / 3.0
    for i in range(t - 13, t + 1):
        tp = (h[i] + lo[i] + c[i]) / 3.0
        flow = tp * v[i]
        if prev != prev or flow != flow:
            su += NAN
            sd += NAN
        elif tp > prev:
            su += flow
        elif tp < prev:
            sd += flow
        else:
            su += 0.0
            sd += 0.0
        prev = tp
    return 100.0 * safe_div1(su, su + sd)


@kernel
def _bars_since_extreme(x: np.ndarray, t: int, w: int, sign: float) -> float:
    """Bars since the most recent maximum (``sign`` 1) or minimum (-1) of ``x`` within the
    ``w`` rows ending at ``t`` (NaN if incomplete or a NaN)."""
    if t - w + 1 < 0:
        return NAN
    best = sign * x[t]
    k = 0
    for i in range(w):
        xv = sign * x[t - i]
        if xv != xv:
            return NAN
        if xv > best:  # strictly: the most recent of equal extremes
            best = xv
            k = i
    return float(k)


@kernel
def _ultosc_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, t: int) -> float:
    """Ultimate oscillator (7, 14, 28) at ``t``."""
    if t - 27 < 0:
        return NAN
    bp = np.empty(28)
    tr = np.empty(28)
    for i in range(28):
        r = t - 27 + i
        pc = c[r - 1] if r >= 1 else NAN
        lv = lo[r]
        # np.fmin(low, pc) (the non-NaN one of the two), + 0 pc: NaN with pc
        m = pc if (lv != lv or pc < lv) else lv
        bp[i] = c[r] - m + 0.0 * pc
        tr[i] = _true_range(c, h, lo, r)
    avg = np.empty(3)
    for q in range(3):
        k = 7 << q
        sb = 0.0
        st = 0.0
        for i in range(28 - k, 28):
            sb += bp[i]
            st += tr[i]
        avg[q] = safe_div1(sb, st)
    return 100.0 * (4.0 * avg[0] + 2.0 * avg[1] + avg[2]) / 7.0


@kernel
def _cmo_at(c: np.ndarray, t: int) -> float:
    """Chande momentum oscillator (14, simple sums) at ``t``."""
    if t - 13 < 1:
        return NAN
    gu = 0.0
    gd = 0.0
    for i in range(t - 13, t + 1):
        d = c[i] - c[i - 1]
        if d != d:
            return NAN
        gu += d if d > 0.0 else 0.0
        gd += -d if -d > 0.0 else 0.0
    return 100.0 * safe_div1(gu - gd, gu + gd)


@kernel
def _vortex_at(c: np.ndarray, h: np.ndarray, lo: np.ndarray, t: int) -> float:
    """(VI+ - VI-) over 14 bars at ``t``."""
    if t - 13 < 1:
        return NAN
    vp = 0.0
    vm = 0.0
    st = 0.0
    for i in range(t - 13, t + 1):
        vp += abs(h[i] - lo[i - 1])
        vm += abs(lo[i] - h[i - 1])
        st += _true_range(c, h, lo, i)
    return safe_div1(vp - vm, st)


@kernel
def _trix_col(c: np.ndarray, pos: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """1e4 * the one-bar change of the triple EMA15 of close, at ``pos``."""
    alpha, w, beta = _PS15
    a3 = max(lo - 1, 0)  # the triple EMA at t and t - 1
    a2 = max(a3 - w + 1, 0)
    a1 = max(a2 - w + 1, 0)
    e1 = ema_rows(c, 0, a1, hi, alpha, w, beta)
    e2 = ema_rows(e1, a1, a2, hi, alpha, w, beta)
    e3 = ema_rows(e2, a2, a3, hi, alpha, w, beta)
    out = np.empty(len(pos))
    for i in range(len(pos)):
        t = pos[i]
        prev = e3[t - 1 - a3] if t >= 1 else NAN
        out[i] = 1e4 * (safe_div1(e3[t - a3], prev) - 1.0)
    return out


@kernel
def _stochrsi_col(c: np.ndarray, pos: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(RSI14 - min14 RSI14) / (max14 - min14) at ``pos``."""
    a = max(lo - 13, 0)
    r = _rsi_run(c, a, hi, _P14)
    out = np.empty(len(pos))
    for i in range(len(pos)):
        t = pos[i]
        if t - 13 < 0:
            out[i] = NAN
            continue
        wv = r[t - 13 - a : t + 1 - a]
        rmin = win_min(wv, 13, 14)
        rmax = win_max(wv, 13, 14)
        out[i] = safe_div1(r[t - a] - rmin, rmax - rmin)
    return out


@kernel
def _ema_col(
    c: np.ndarray, pos: np.ndarray, lo: int, hi: int, p: tuple[float, int, float]
) -> np.ndarray:
    """The EMA of close (parameters ``p``) at ``pos``."""
    alpha, w, beta = p
    e = ema_rows(c, 0, lo, hi, alpha, w, beta)
    out = np.empty(len(pos))
    for i in range(len(pos)):
        out[i] = e[pos[i] - lo]
    return out


_SMA_W = (10, 20, 50, 100, 200)
_ROC_N = (5, 10, 20, 120)


@kernel
def _technical_pt(
    c: np.ndarray, h: np.ndarray, lo: np.ndarray, v: np.ndarray, pos: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """The features ``idx`` (places in ``_TABLE``) at the rows ``pos`` (``0 <= pos <
    len(c)``): (len(pos), len(idx)). One kernel for all of them (a kernel per feature that
    this one called would be compiled twice: alone and inlined here)."""
    n = len(pos)
    res = np.empty((n, len(idx)))
    if n == 0:
        return res
    a = pos[0]
    b = pos[0]
    for i in range(n):
        a = min(a, pos[i])
        b = max(b, pos[i])
    for j in range(len(idx)):
        k = idx[j]
        out = np.empty(n)
        if k <= 2:  # rsi_7, rsi_14, rsi_28
            r = _rsi_run(c, a, b, _P7 if k == 0 else (_P14 if k == 1 else _P28))
            for i in range(n):
                out[i] = r[pos[i] - a]
        elif k <= 5:  # macd, macd_signal, macd_hist: the MACD over the rows the EMA9 reads
            a9, w9, b9 = _P9
            s = max(a - w9 + 1, 0)
            m = _macd_run(c, s, b)
            sig = ema_rows(m, s, a, b, a9, w9, b9) if k > 3 else m
            for i in range(n):
                t = pos[i]
                if k == 3:
                    num = m[t - s]
                elif k == 4:
                    num = sig[t - a]
                else:
                    num = m[t - s] - sig[t - a]
                out[i] = safe_div1(num, c[t])
        elif k == 6:  # stoch_k_14
            for i in range(n):
                out[i] = _k14_at(c, h, lo, pos[i])
        elif k == 7:  # stoch_d_14: SMA3 of stoch_k_14
            for i in range(n):
                t = pos[i]
                if t - 2 < 0:
                    out[i] = NAN
                else:
                    s3 = _k14_at(c, h, lo, t - 2) + _k14_at(c, h, lo, t - 1)
                    out[i] = (s3 + _k14_at(c, h, lo, t)) / 3.0
        elif k == 8:  # adx_14
            r = _adx_run(c, h, lo, a, b)
            for i in range(n):
                out[i] = r[pos[i] - a]
        elif k <= 10:  # plus_di_14, minus_di_14
            pdi, mdi = _di_run(c, h, lo, a, b)
            r = pdi if k == 9 else mdi
            for i in range(n):
                out[i] = r[pos[i] - a]
        elif k == 11:  # cci_20
            for i in range(n):
                out[i] = _cci_at(c, h, lo, pos[i])
        elif k == 12:  # willr_28
            for i in range(n):
                t = pos[i]
                hh = win_max(h, t, 28)
                out[i] = -100.0 * safe_div1(hh - c[t], hh - win_min(lo, t, 28))
        elif k <= 14:  # natr_14, natr_28
            r = _atr_run(c, h, lo, a, b, _P14 if k == 13 else _P28)
            for i in range(n):
                t = pos[i]
                out[i] = 100.0 * safe_div1(r[t - a], c[t])
        elif k <= 18:  # ema_ratio_10/20/50/100
            p = _PS10 if k == 15 else (_PS20 if k == 16 else (_PS50 if k == 17 else _PS100))
            e = _ema_col(c, pos, a, b, p)
            for i in range(n):
                out[i] = safe_div1(c[pos[i]], e[i]) - 1.0
        elif k <= 23:  # sma_ratio_10/20/50/100/200
            w = _SMA_W[k - 19]
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(c[t], win_sum(c, t, w) / w) - 1.0
        elif k <= 27:  # roc_5/10/20/120
            q = _ROC_N[k - 24]
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(c[t], c[t - q] if t - q >= 0 else NAN) - 1.0
        elif k == 28:  # sma_cross_50_200
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(win_sum(c, t, 50) / 50, win_sum(c, t, 200) / 200) - 1.0
        elif k == 29:  # ema_cross_10_50
            e10 = _ema_col(c, pos, a, b, _PS10)
            e50 = _ema_col(c, pos, a, b, _PS50)
            for i in range(n):
                out[i] = safe_div1(e10[i], e50[i]) - 1.0
        elif k == 30:  # stochrsi_14
            out = _stochrsi_col(c, pos, a, b)
        elif k == 31:  # mfi_14
            for i in range(n):
                out[i] = _mfi_at(c, h, lo, v, pos[i])
        elif k <= 33:  # aroon_up_25, aroon_down_25
            x = h if k == 32 else lo
            sign = 1.0 if k == 32 else -1.0
            for i in range(n):
                out[i] = 100.0 * (25.0 - _bars_since_extreme(x, pos[i], 26, sign)) / 25.0
        elif k == 34:  # ultosc
            for i in range(n):
                out[i] = _ultosc_at(c, h, lo, pos[i])
        elif k == 35:  # trix_15
            out = _trix_col(c, pos, a, b)
        elif k == 36:  # keltner_pos
            e = _ema_col(c, pos, a, b, _PS20)
            r = _atr_run(c, h, lo, a, b, _P10W)
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(c[t] - e[i], 2.0 * r[t - a])
        elif k == 37:  # donchian_pos_55
            for i in range(n):
                t = pos[i]
                ll = win_min(lo, t, 55)
                out[i] = safe_div1(c[t] - ll, win_max(h, t, 55) - ll)
        elif k == 38:  # dpo_20
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(c[t] - win_sum(c, t - 11, 20) / 20, c[t])
        elif k <= 40:  # tenkan_dev, kijun_dev
            w = 9 if k == 39 else 26
            for i in range(n):
                t = pos[i]
                mid = (win_max(h, t, w) + win_min(lo, t, w)) / 2.0
                out[i] = safe_div1(c[t] - mid, c[t])
        elif k <= 42:  # elder_bull_13, elder_bear_13
            e = _ema_col(c, pos, a, b, _PS13)
            x = h if k == 41 else lo
            for i in range(n):
                t = pos[i]
                out[i] = safe_div1(x[t] - e[i], c[t])
        elif k == 43:  # cmo_14
            for i in range(n):
                out[i] = _cmo_at(c, pos[i])
        else:  # vortex_diff_14
            for i in range(n):
                out[i] = _vortex_at(c, h, lo, pos[i])
        res[:, j] = out
    return res


_MFI = 31  # mfi_14, the only feature that reads the volume
_IDX: dict[object, tuple[np.ndarray, bool]] = {}


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """The features ``idx`` at the few rows ``pos`` of an online call (compiled kernels)."""
    hit = _IDX.get(idx) if isinstance(idx, (tuple, range)) else None
    if hit is None:
        ix = np.array(list(idx), dtype=np.int64)
        hit = (ix, _MFI in ix.tolist())
        if isinstance(idx, (tuple, range)):
            _IDX[idx] = hit
    ix, mfi = hit
    c = ctx.c
    # pos: a writable int64 copy (the plan's rows are read-only: numba would compile
    # another specialisation for them)
    return _technical_pt(c, ctx.h, ctx.l, ctx.v if mfi else c, pos.astype(np.int64), ix)


FAMILY = Family("technical", True, _specs(), compute, compute_subset, compute_online)
