"""Technical indicators (45 features, lagged), textbook definitions.

Wilder smoothing (RMA, alpha = 1/n) for RSI, ATR, ADX/DI; EMA with alpha = 2/(span+1)
elsewhere; both truncated to a finite window whose neglected weight is < 1e-9 (see
:mod:`bqx.features._ops`). Price-unit indicators are divided by close so that values are
comparable across pairs (e.g. ``macd`` is (EMA12 - EMA26) / close).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

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
    def f() -> np.ndarray:
        pc = shift(ctx.c, 1)
        tr = np.maximum.reduce([ctx.h - ctx.l, np.abs(ctx.h - pc), np.abs(ctx.l - pc)])
        return tr

    return ctx.memo("tr", f)


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


def _tp(ctx: Ctx) -> np.ndarray:
    return ctx.memo("tp", lambda: (ctx.h + ctx.l + ctx.c) / 3.0)


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


FAMILY = Family("technical", True, _specs(), compute, compute_subset)
