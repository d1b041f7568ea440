"""Correlation (15 features, not lagged): rolling correlations of the pair's one-bar log
returns with its two currency legs and the risk cycle, between the legs, and of its absolute
returns with market-wide activity; windows 60, 240, 720 bars. Needs all 28 pairs.

* ``corr_base_w``   corr(r, index return of the base currency)
* ``corr_quote_w``  corr(r, index return of the quote currency)
* ``corr_risk_w``   corr(r, risk proxy = mean(AUD, NZD, CAD) - mean(JPY, CHF) index returns)
* ``corr_legs_w``   corr(base index return, quote index return)
* ``corr_absvol_w`` corr(|r|, mean |r| over all pairs)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bqx.features._jit import kernel
from bqx.features._kern_sums import I64_0, np_clip, np_pairwise_sum, point_rows, spec_index
from bqx.features._ops import corr_at
from bqx.features.context import CCY_MEMBERS, Ctx, Family, Spec
from bqx.universe import CURRENCIES

WINDOWS = (60, 240, 720)
_KINDS = {
    "base": "corr(r, base currency index return)",
    "quote": "corr(r, quote currency index return)",
    "risk": "corr(r, risk proxy: mean(AUD,NZD,CAD) - mean(JPY,CHF) index returns)",
    "legs": "corr(base index return, quote index return)",
    "absvol": "corr(|r|, mean |r| across all pairs)",
}
SPECS = tuple(
    Spec(f"corr_{k}_{w}", "correlation", f"{d}, {w} bars", w, ("cross",))
    for k, d in _KINDS.items()
    for w in WINDOWS
)


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    r = ctx.r
    rb = ctx.ccy_return(ctx.pair[:3])
    rq = ctx.ccy_return(ctx.pair[3:])
    risk = (ctx.ccy_return("AUD") + ctx.ccy_return("NZD") + ctx.ccy_return("CAD")) / 3.0 - (
        ctx.ccy_return("JPY") + ctx.ccy_return("CHF")
    ) / 2.0
    mkt = ctx.market_abs_return()
    pairs = ((r, rb), (r, rq), (r, risk), (rb, rq), (np.abs(r), mkt))
    out = np.empty((len(pos), len(SPECS)))
    k = 0
    for x, y in pairs:
        for w in WINDOWS:
            out[:, k] = corr_at(x, y, w, pos)
            k += 1
    return out


# ---- the online point path (compiled) ------------------------------------------------------
# Currency index returns, once per panel: ``R[c, r - s0]`` is the return of currency c
# (CURRENCIES order) at panel row r >= s0 + 1 (:meth:`Ctx.ccy_return`'s mean of the 7 oriented
# member returns, summed in member order), NaN when a member pair is absent from the panel.
# The values are row-local, so every window reads the same numbers from it; a window's first
# row is NaN (as in :meth:`Ctx.ccy_return`, which has no return before its window).
_CCY_KEY = ("correlation", "ccy_returns")
_RISK = tuple(CURRENCIES.index(c) for c in ("AUD", "NZD", "CAD", "JPY", "CHF"))


@kernel
def ccy_returns_kernel(lc: np.ndarray, s0: int, cols: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``out[r] = sum_j (lc[s0+r, cols[j]] - lc[s0+r-1, cols[j]]) * signs[j]`` for the rows
    r >= 1 of ``lc`` from ``s0`` on (``out[0]`` NaN: no earlier row)."""
    out = np.empty(lc.shape[0] - s0)
    out[0] = np.nan
    for r in range(1, out.shape[0]):
        acc = 0.0
        for j in range(cols.shape[0]):
            c = cols[j]
            acc += (lc[s0 + r, c] - lc[s0 + r - 1, c]) * signs[j]
        out[r] = acc
    return out


def _ccy_returns(ctx: Ctx, ccys: Sequence[int]) -> tuple[np.ndarray, int]:
    """(R, off): the per-panel currency returns (``R[c, off + t]`` at the context's row t)
    with the currencies ``ccys`` filled; taken from the first asking context's start to the
    panel's end, from row 0 once a context starting earlier asks (as ``Ctx`` does)."""
    src = ctx._src
    base, start = (ctx.panel, 0) if src is None else (src[0], src[1])
    hit: tuple[int, np.ndarray, np.ndarray] | None = base._cache.get(_CCY_KEY)
    if hit is None or hit[0] > start:
        s0 = start if hit is None else 0
        hit = (s0, np.full((len(CURRENCIES), len(base) - s0), np.nan), np.zeros(8, bool))
        base._cache[_CCY_KEY] = hit
    s0, R, done = hit
    for c in ccys:
        if done[c]:
            continue
        pairs = base.pairs
        members = CCY_MEMBERS[CURRENCIES[c]]
        if all(p in pairs for p, _ in members):
            cols = np.array([pairs.index(p) for p, _ in members], dtype=np.int64)
            signs = np.array([sgn for _, sgn in members]) / len(members)
            R[c] = ccy_returns_kernel(base.log_close, s0, cols, signs)
        done[c] = True  # absent member: the row stays NaN
    return R, start - s0


@kernel
def corr_window(
    x: np.ndarray,
    y: np.ndarray,
    w: int,
    a: np.ndarray,
    b: np.ndarray,
    ab: np.ndarray,
) -> float:
    """:func:`bqx.features._ops.corr_pt` of the windows ``x[:w]``, ``y[:w]`` with its
    arithmetic (means, centred values, pairwise sums of the products, the 1e-30 floor,
    the clip); ``a``, ``b``, ``ab`` are scratch."""
    mx = np_pairwise_sum(x, I64_0, w) / w
    my = np_pairwise_sum(y, I64_0, w) / w
    u = np.uint64
    for i in range(w):
        a[u(i)] = x[u(i)] - mx
        b[u(i)] = y[u(i)] - my
    for i in range(w):
        ab[u(i)] = a[u(i)] * b[u(i)]
    sab = np_pairwise_sum(ab, I64_0, w)
    for i in range(w):
        ab[u(i)] = a[u(i)] * a[u(i)]
    saa = np_pairwise_sum(ab, I64_0, w)
    for i in range(w):
        ab[u(i)] = b[u(i)] * b[u(i)]
    sbb = np_pairwise_sum(ab, I64_0, w)
    den = math.sqrt(saa * sbb)
    if not den > 1e-30:
        return np.nan
    return np_clip(sab / den, -1.0, 1.0)


@kernel
def corr_point_kernel(
    r: np.ndarray,
    mkt: np.ndarray,
    R: np.ndarray,
    off: int,
    cc: np.ndarray,
    pos: np.ndarray,
    idx: np.ndarray,
) -> np.ndarray:
    """The specs ``idx`` at the rows ``pos``: ``(len(pos), len(idx))``. ``r`` the pair's
    returns, ``mkt`` the market's mean absolute return (read by kind 4 only), ``R``/``off``
    the currency returns (:func:`_ccy_returns`), ``cc`` the currency rows of the base, the
    quote, AUD, NZD, CAD, JPY, CHF. Each value: the two series over the window ending at
    the row (NaN before the context's first row), then :func:`corr_window`."""
    nwin = _WINS.shape[0]
    m = pos.shape[0]
    out = np.empty((m, idx.shape[0]))
    wmax = 0
    for c in range(idx.shape[0]):
        wmax = max(wmax, _WINS[idx[c] % nwin])
    x = np.empty(wmax)
    y = np.empty(wmax)
    a = np.empty(wmax)
    b = np.empty(wmax)
    ab = np.empty(wmax)
    for row in range(m):
        t = pos[row]
        for c in range(idx.shape[0]):
            kind = idx[c] // nwin
            w = _WINS[idx[c] % nwin]
            lo = t - w + 1
            i0 = -lo if lo < 0 else 0  # before the context's first row: NaN
            for i in range(i0):
                x[i] = np.nan
                y[i] = np.nan
            # one loop per kind, unsigned indices (no wrap-around test per load)
            u = np.uint64
            if kind <= 1:
                cr = R[cc[kind]]
                for i in range(i0, w):
                    q = u(lo + i)
                    x[u(i)] = r[q]
                    y[u(i)] = cr[u(off) + q]
            elif kind == 2:
                au, nz, ca, jp, ch = R[cc[2]], R[cc[3]], R[cc[4]], R[cc[5]], R[cc[6]]
                for i in range(i0, w):
                    q = u(lo + i)
                    k = u(off) + q
                    x[u(i)] = r[q]
                    y[u(i)] = (au[k] + nz[k] + ca[k]) / 3.0 - (jp[k] + ch[k]) / 2.0
            elif kind == 3:
                rb, rq = R[cc[0]], R[cc[1]]
                for i in range(i0, w):
                    k = u(off + lo + i)
                    x[u(i)] = rb[k]
                    y[u(i)] = rq[k]
            else:
                for i in range(i0, w):
                    q = u(lo + i)
                    x[u(i)] = abs(r[q])
                    y[u(i)] = mkt[q]
            if lo <= 0 and kind <= 3:  # a currency return at the context's first row: NaN
                y[-lo] = np.nan
                if kind == 3:
                    x[-lo] = np.nan
            out[row, c] = corr_window(x, y, w, a, b, ab)
    return out


_WINS = np.array(WINDOWS, dtype=np.int64)
_CC: dict[str, np.ndarray] = {}
_NEEDS: dict[int, tuple[np.ndarray, tuple[bool, bool, bool, bool]]] = {}


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Only the asked correlations (and only the currency indices they read), each by
    :func:`corr_point_kernel` from the rows its window reads."""
    ix = spec_index(idx)
    cc = _CC.get(ctx.pair)
    if cc is None:
        cc = _CC[ctx.pair] = np.array(
            [CURRENCIES.index(ctx.pair[:3]), CURRENCIES.index(ctx.pair[3:]), *_RISK],
            dtype=np.int64,
        )
    hit = _NEEDS.get(id(ix))
    if hit is None or hit[0] is not ix:  # which series the asked kinds read
        kinds = {int(i) // len(WINDOWS) for i in ix}
        reads = (bool(kinds & {0, 3}), bool(kinds & {1, 3}), 2 in kinds, 4 in kinds)
        if len(_NEEDS) > 1024:
            _NEEDS.clear()
        hit = _NEEDS[id(ix)] = (ix, reads)
    base_, quote_, risk_, reads_mkt = hit[1]
    ccys_t = ((int(cc[0]),) if base_ else ()) + ((int(cc[1]),) if quote_ else ())
    if risk_:
        ccys_t += _RISK
    R, off = _ccy_returns(ctx, ccys_t)
    r = ctx.r
    mkt = ctx.market_abs_return() if reads_mkt else r  # r: a placeholder, not read
    return corr_point_kernel(r, mkt, R, off, cc, point_rows(pos), ix)


FAMILY = Family("correlation", False, SPECS, compute, compute_online=compute_online)
