"""Compiled point kernels of the small non-lagged families (spread, fibonacci, volume,
stats, bollinger, derived): the online values of ``compute_online`` in one compiled call
each, instead of dozens of small numpy calls (see :mod:`bqx.features._jit`).

Every kernel reads the pair's block (:meth:`bqx.features.context.Ctx.block`: rows open,
high, low, close, volume, spread, log close over the base panel's rows), the context's
first row ``a0`` in it, the rows ``pos`` (relative to the context) and the spec indices
``idx``, and returns ``(len(pos), len(idx))`` values. A row before ``a0`` is outside the
context: every value whose window reaches it is NaN (as ``windows_at`` pads them), and a
row-local series (returns, true range, ...) is NaN at the context's first row (its
previous bar lies outside), as the family's numpy series on the context are.

Arithmetic: the window sums are numpy's own pairwise summation (:func:`_psum`, the
algorithm of ``np.add.reduce`` on a contiguous row: 8 partial sums per block of <= 128,
halves above), means and standard deviations the steps of ``_ops.row_mean`` /
``_ops.row_std``, so they equal the numpy point path they replace bit for bit; max, min
and comparisons are exact. Transcendental functions (log, exp, log1p, pow) are libm's
and may differ from numpy's by an ulp; the EMA is a sequential dot product (numpy's
was a BLAS matrix product). Every value agrees with the batch ``compute`` to rounding
(``tests/features/test_parity.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bqx.features._jit import kernel
from bqx.features._kern_sums import np_pairwise_sum

NAN = math.nan


# ---- numpy's pairwise sum: the one of bqx.features._kern_sums ------------------------------
@kernel
def _psum(x: np.ndarray) -> float:
    """``np.add.reduce(x)`` bit for bit (numpy's pairwise summation) for ``len(x) <= 2048``
    (every window here; longer: NaN) - :func:`bqx.features._kern_sums.np_pairwise_sum` on
    the whole of a contiguous 1-D view."""
    return np_pairwise_sum(x, 0, x.shape[0])


@kernel
def _std_of(x: np.ndarray, tmp: np.ndarray) -> float:
    """``row_std`` of ``x`` (numpy's two-pass steps; ``tmp`` is scratch)."""
    n = len(x)
    m = _psum(x) / n
    for i in range(n):
        d = x[i] - m
        tmp[i] = d * d
    return math.sqrt(_psum(tmp[:n]) / n)


@kernel
def _sdiv(a: float, b: float) -> float:
    """``safe_div``: IEEE division, NaN where the result is not finite."""
    r = a / b
    return r if math.isfinite(r) else NAN


@kernel
def _wmax(x: np.ndarray, a: int, b: int) -> float:
    """``max`` of ``x[a:b+1]`` with NaN propagating (``np.maximum.reduce``)."""
    m = x[a]
    if m != m:
        return NAN
    for i in range(a + 1, b + 1):
        v = x[i]
        if v != v:
            return NAN
        if v > m:
            m = v
    return m


@kernel
def _wmin(x: np.ndarray, a: int, b: int) -> float:
    m = x[a]
    if m != m:
        return NAN
    for i in range(a + 1, b + 1):
        v = x[i]
        if v != v:
            return NAN
        if v < m:
            m = v
    return m


@kernel
def _ret(lc: np.ndarray, a0: int, i: int) -> float:
    """The one-bar log return at row ``i`` (NaN at the context's first row and before)."""
    if i - 1 < a0:
        return NAN
    return lc[i] - lc[i - 1]


# ---- spread ---------------------------------------------------------------------------------


@kernel
def _tr(blk: np.ndarray, a0: int, i: int) -> float:
    """True range at row ``i``: max(h - l, |h - pc|, |l - pc|), NaN when any is NaN."""
    if i - 1 < a0:
        return NAN
    pc = blk[3, i - 1]
    h = blk[1, i]
    lo = blk[2, i]
    t = h - lo
    b = abs(h - pc)
    c = abs(lo - pc)
    if t != t or b != b or c != c:
        return NAN
    if b > t:
        t = b
    if c > t:
        t = c
    return t


@kernel
def _cs_fill(blk: np.ndarray, a0: int, first: int, n: int, k: float) -> np.ndarray:
    """The Corwin-Schultz two-bar estimates of the ``n`` rows from ``first`` (spread.
    compute's expression; NaN at the context's first row and before). ``log(h / l)`` of a
    row is taken once and reused as the next row's previous one, and ``log(hmax / lmin)``
    is that same log when the two-bar high and low are this bar's (the same operands: the
    same value)."""
    out = np.empty(n)
    hlp = NAN
    prev = -1  # the row whose log(h / l) is in hlp
    for t in range(n):
        i = first + t
        if i - 1 < a0:
            out[t] = NAN
            continue
        h, lo, hp, lp = blk[1, i], blk[2, i], blk[1, i - 1], blk[2, i - 1]
        if prev != i - 1:
            hlp = math.log(hp / lp)
        hl = math.log(h / lo)
        beta = hl * hl + hlp * hlp
        # np.fmax / np.fmin (a NaN operand yields the other), then + 0 * previous
        hmax = hp if (h != h or hp > h) else h
        lmin = lp if (lo != lo or lp < lo) else lo
        hmax = hmax + 0.0 * hp
        lmin = lmin + 0.0 * lp
        g = hl if (hmax == h and lmin == lo) else math.log(hmax / lmin)
        gamma = g * g
        alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
        e = math.exp(alpha)
        cs = 2 * (e - 1) / (1 + e)
        out[t] = NAN if cs != cs else (cs if cs > 0.0 else 0.0)
        hlp = hl
        prev = i
    return out


@kernel
def _ar_fill(blk: np.ndarray, a0: int, first: int, n: int) -> np.ndarray:
    """The Abdi-Ranaldo terms 4 (lc_{i-1} - eta_{i-1}) (lc_{i-1} - eta_i) of the ``n`` rows
    from ``first`` (eta = mean of log high and log low, taken once per row)."""
    out = np.empty(n)
    etap = NAN
    prev = -1
    for t in range(n):
        i = first + t
        if i - 1 < a0:
            out[t] = NAN
            continue
        if prev != i - 1:
            etap = (math.log(blk[1, i - 1]) + math.log(blk[2, i - 1])) / 2.0
        eta = (math.log(blk[1, i]) + math.log(blk[2, i])) / 2.0
        lcp = blk[6, i - 1]
        out[t] = 4.0 * (lcp - etap) * (lcp - eta)
        etap = eta
        prev = i
    return out


@kernel
def _mean_w(x: np.ndarray, q: int, w: int, a0: int) -> float:
    """``mean_pt(x, w)`` at row ``q`` (NaN when the window starts before ``a0``)."""
    a = q - w + 1
    if a < a0:
        return NAN
    return _psum(x[a : q + 1]) / w


@kernel
def _std_w(x: np.ndarray, q: int, w: int, a0: int, tmp: np.ndarray) -> float:
    """``std_pt(x, w)`` at row ``q``."""
    a = q - w + 1
    if a < a0:
        return NAN
    return _std_of(x[a : q + 1], tmp)


@kernel
def spread_kernel(
    blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray, pip: float, ew: np.ndarray
) -> np.ndarray:
    """The 20 spread features (``spread.SPECS`` order); ``ew``: the ATR(14) EMA weights."""
    out = np.empty((len(pos), len(idx)))
    buf = np.empty(256)
    tmp = np.empty(256)
    buf2 = np.empty(256)
    cs = np.empty(240)
    ar = np.empty(240)
    k_cs = 3.0 - 2.0 * math.sqrt(2.0)
    for r in range(len(pos)):
        q = a0 + pos[r]
        sp = blk[5, q]
        cs_done = False
        ar_done = False
        for j in range(len(idx)):
            k = idx[j]
            v = NAN
            if k == 0:
                v = sp / pip
            elif k == 1:
                v = 1e4 * _sdiv(sp, blk[3, q])
            elif k == 2 or k == 3 or k == 4:
                w = 15 if k == 2 else (60 if k == 3 else 240)
                v = _sdiv(sp, _mean_w(blk[5], q, w, a0))
            elif k == 5 or k == 6:
                w = 60 if k == 5 else 240
                v = _sdiv(sp - _mean_w(blk[5], q, w, a0), _std_w(blk[5], q, w, a0, tmp))
            elif k == 7:
                mx = _wmax(blk[5], q - 59, q) if q - 59 >= a0 else NAN
                v = _sdiv(mx, _mean_w(blk[5], q, 60, a0))
            elif k == 8:
                v = _sdiv(_std_w(blk[5], q, 60, a0, tmp), _mean_w(blk[5], q, 60, a0))
            elif k == 9:
                v = _sdiv(_mean_w(blk[5], q, 15, a0), _mean_w(blk[5], q, 240, a0))
            elif k == 10:
                w = len(ew)
                a = q - w + 1
                atr = NAN
                if a >= a0:
                    atr = 0.0
                    for i in range(w):
                        atr += _tr(blk, a0, a + i) * ew[i]
                v = _sdiv(sp, atr)
            elif k == 11:
                v = _sdiv(sp, blk[1, q] - blk[2, q] + sp)
            elif k == 12:
                if q - 239 >= a0:
                    smin = _wmin(blk[5], q - 239, q)
                    v = _sdiv(sp - smin, _wmax(blk[5], q - 239, q) - smin)
            elif k == 13:
                eps = 0.1 * pip
                prev = blk[5, q - 60] if q - 60 >= a0 else NAN
                v = math.log((sp + eps) / (prev + eps))
            elif k == 14 or k == 15:
                w = 60 if k == 14 else 240
                a = q - w + 1
                if a - 2 >= a0:  # r_{t-1} at the window's first row reads lc two rows before
                    for i in range(w):
                        x = _ret(blk[6], a0, a + i)
                        x1 = _ret(blk[6], a0, a + i - 1)
                        buf[i] = x * x1
                        tmp[i] = x
                        buf2[i] = x1
                    cov = _psum(buf[:w]) / w - (_psum(tmp[:w]) / w) * (_psum(buf2[:w]) / w)
                    if cov == cov:
                        v = 2.0 * math.sqrt(-cov if -cov > 0.0 else 0.0) + 0.0 * cov
            elif k == 16 or k == 17:
                # the two-bar estimates of the last 240 rows, once per row for both windows
                w = 60 if k == 16 else 240
                if q - w >= a0:
                    if not cs_done:
                        cs = _cs_fill(blk, a0, q - 239, 240, k_cs)
                        cs_done = True
                    v = _psum(cs[240 - w :]) / w
            else:
                w = 60 if k == 18 else 240
                if q - w >= a0:
                    if not ar_done:
                        ar = _ar_fill(blk, a0, q - 239, 240)
                        ar_done = True
                    m = _psum(ar[240 - w :]) / w
                    if m == m:
                        v = math.sqrt(m if m > 0.0 else 0.0) + 0.0 * m
            out[r, j] = v
    return out


# ---- fibonacci ------------------------------------------------------------------------------
@kernel
def fib_kernel(
    blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """The 12 fibonacci features (``fibonacci.SPECS`` order: 6 per swing window 120, 480),
    bit for bit ``fibonacci.compute``'s (only +, -, *, / and comparisons)."""
    out = np.empty((len(pos), len(idx)))
    for r in range(len(pos)):
        q = a0 + pos[r]
        c = blk[3, q]
        for j in range(len(idx)):
            k = idx[j]
            w = 120 if k < 6 else 480
            kk = k % 6
            a = q - w + 1
            v = NAN
            if a >= a0:
                if kk < 5:
                    hi = _wmax(blk[1], a, q)
                    lo = _wmin(blk[2], a, q)
                    rng = hi - lo
                    p = _sdiv(c - lo, rng)
                    if kk == 0:
                        v = p
                    elif kk == 1:
                        v = _sdiv(c - (lo + 0.382 * rng), c)
                    elif kk == 2:
                        v = _sdiv(c - (lo + 0.618 * rng), c)
                    elif p == p:
                        if kk == 3:  # the first level with the smallest |p - level|
                            best = p - levels[0]
                            for i in range(1, len(levels)):
                                d = p - levels[i]
                                if abs(d) < abs(best):
                                    best = d
                            v = best
                        else:  # searchsorted(levels, p, "right"): the levels <= p
                            n = 0
                            for i in range(len(levels)):
                                if levels[i] <= p:
                                    n += 1
                            v = float(n)
                else:
                    # bars since the most recent high / low; NaN unless both windows finite
                    ok = True
                    ih = q
                    il = q
                    for i in range(q, a - 1, -1):
                        hv, lv = blk[1, i], blk[2, i]
                        if not (math.isfinite(hv) and math.isfinite(lv)):
                            ok = False
                            break
                        if hv > blk[1, ih]:
                            ih = i
                        if lv < blk[2, il]:
                            il = i
                    if ok:
                        v = 1.0 if (q - ih) < (q - il) else -1.0
            out[r, j] = v
    return out


# ---- volume ---------------------------------------------------------------------------------
@kernel
def volume_kernel(blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The 10 volume features (``volume.SPECS`` order)."""
    out = np.empty((len(pos), len(idx)))
    buf = np.empty(256)
    tmp = np.empty(256)
    for r in range(len(pos)):
        q = a0 + pos[r]
        vq = blk[4, q]
        for j in range(len(idx)):
            k = idx[j]
            v = NAN
            if k == 0:
                v = math.log1p(vq)
            elif k == 1 or k == 2 or k == 3:
                w = 15 if k == 1 else (60 if k == 2 else 240)
                v = _sdiv(vq, _mean_w(blk[4], q, w, a0))
            elif k == 4:
                v = _sdiv(vq - _mean_w(blk[4], q, 60, a0), _std_w(blk[4], q, 60, a0, tmp))
            elif k == 5:
                v = _sdiv(_mean_w(blk[4], q, 15, a0), _mean_w(blk[4], q, 240, a0))
            elif k == 6:
                a = q - 59
                if a - 1 >= a0:
                    for i in range(60):
                        x = _ret(blk[6], a0, a + i)
                        sg = NAN if x != x else (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))
                        buf[i] = sg * blk[4, a + i]
                        tmp[i] = blk[4, a + i]
                    v = _sdiv(_psum(buf[:60]), _psum(tmp[:60]))
            elif k == 7 or k == 8:
                w = 60 if k == 7 else 240
                a = q - w + 1
                if a >= a0:
                    for i in range(w):
                        tp = (blk[1, a + i] + blk[2, a + i] + blk[3, a + i]) / 3.0
                        buf[i] = tp * blk[4, a + i]
                        tmp[i] = blk[4, a + i]
                    vwap = _sdiv(_psum(buf[:w]), _psum(tmp[:w]))
                    v = _sdiv(blk[3, q] - vwap, blk[3, q])
            else:
                v = _corr(blk, a0, q, 60, buf, tmp)
            out[r, j] = v
    return out


@kernel
def _corr(blk: np.ndarray, a0: int, q: int, w: int, bx: np.ndarray, by: np.ndarray) -> float:
    """``corr_pt(|r|, volume, w)`` at row ``q``: centred sums, NaN unless den > 1e-30,
    clipped to [-1, 1]."""
    a = q - w + 1
    if a - 1 < a0:
        return NAN
    for i in range(w):
        bx[i] = abs(_ret(blk[6], a0, a + i))
        by[i] = blk[4, a + i]
    return _corr_of(bx, by, w)


@kernel
def _corr_of(bx: np.ndarray, by: np.ndarray, w: int) -> float:
    """``corr_pt``'s arithmetic on two filled buffers (overwritten)."""
    mx = _psum(bx[:w]) / w
    my = _psum(by[:w]) / w
    for i in range(w):
        bx[i] = bx[i] - mx
        by[i] = by[i] - my
    prod = np.empty(w)
    for i in range(w):
        prod[i] = bx[i] * by[i]
    sab = _psum(prod[:w])
    for i in range(w):
        prod[i] = bx[i] * bx[i]
    saa = _psum(prod[:w])
    for i in range(w):
        prod[i] = by[i] * by[i]
    sbb = _psum(prod[:w])
    den = math.sqrt(saa * sbb)
    if not den > 1e-30:
        return NAN
    x = sab / den
    if x < -1.0:
        return -1.0
    if x > 1.0:
        return 1.0
    return x


# ---- stats ----------------------------------------------------------------------------------
@kernel
def stats_kernel(blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The 5 return statistics (``stats.SPECS`` order)."""
    out = np.empty((len(pos), len(idx)))
    buf = np.empty(256)
    tmp = np.empty(256)
    lc = blk[6]
    for r in range(len(pos)):
        q = a0 + pos[r]
        for j in range(len(idx)):
            k = idx[j]
            v = NAN
            if k == 0 or k == 1:
                a = q - 239
                if a - 1 >= a0:
                    for i in range(240):
                        buf[i] = _ret(lc, a0, a + i)
                    m1 = _psum(buf[:240]) / 240
                    for i in range(240):
                        tmp[i] = buf[i] * buf[i]
                    m2r = _psum(tmp[:240]) / 240
                    for i in range(240):
                        tmp[i] = buf[i] ** 3
                    m3r = _psum(tmp[:240]) / 240
                    for i in range(240):
                        tmp[i] = buf[i] ** 4
                    m4r = _psum(tmp[:240]) / 240
                    c2 = m2r - m1 * m1
                    if c2 > 0:
                        if k == 0:
                            c3 = m3r - 3 * m1 * m2r + 2 * m1**3
                            v = c3 / c2**1.5
                        else:
                            c4 = m4r - 4 * m1 * m3r + 6 * m1**2 * m2r - 3 * m1**4
                            v = c4 / (c2 * c2) - 3.0
            elif k == 2:
                a = q - 59
                if a - 2 >= a0:
                    for i in range(60):
                        buf[i] = _ret(lc, a0, a + i)
                        tmp[i] = _ret(lc, a0, a + i - 1)
                    v = _corr_of(buf, tmp, 60)
            elif k == 3:
                a = q - 239
                if a - 5 >= a0:
                    for i in range(240):
                        x5 = lc[a + i] - lc[a + i - 5]
                        buf[i] = x5 * x5
                        x = _ret(lc, a0, a + i)
                        tmp[i] = x * x
                    v = _sdiv(_psum(buf[:240]), 5.0 * _psum(tmp[:240]))
            else:
                a = q - 59
                if a - 1 >= a0:
                    for i in range(60):
                        buf[i] = _ret(lc, a0, a + i)
                    v = _std_of(buf[:60], tmp)
            out[r, j] = v
    return out


# ---- bollinger ------------------------------------------------------------------------------
@kernel
def _band(blk: np.ndarray, a0: int, q: int, w: int, tmp: np.ndarray) -> tuple:
    """(%B, width) of the ``w``-bar band at row ``q``."""
    a = q - w + 1
    if a < a0:
        return NAN, NAN
    win = blk[3, a : q + 1]
    mid = _psum(win) / w
    sd = _std_of(win, tmp)
    c = blk[3, q]
    return _sdiv(c - (mid - 2 * sd), 4 * sd), _sdiv(4 * sd, mid)


@kernel
def bollinger_kernel(blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The 5 Bollinger features (``bollinger.SPECS`` order)."""
    out = np.empty((len(pos), len(idx)))
    tmp = np.empty(64)
    for r in range(len(pos)):
        q = a0 + pos[r]
        for j in range(len(idx)):
            k = idx[j]
            v = NAN
            if k < 4:
                b = _band(blk, a0, q, 20 if k < 2 else 50, tmp)
                v = b[k % 2]
            else:
                # width_20 / its minimum over 120 rows (NaN when a window leaves the context)
                wq = _band(blk, a0, q, 20, tmp)[1]
                if q - 119 >= a0:
                    mn = wq
                    for i in range(q - 119, q):
                        x = _band(blk, a0, i, 20, tmp)[1]
                        if x != x or mn != mn:
                            mn = NAN
                        elif x < mn:
                            mn = x
                    v = _sdiv(wq, mn)
            out[r, j] = v
    return out


# ---- derived --------------------------------------------------------------------------------
@kernel
def derived_kernel(blk: np.ndarray, a0: int, pos: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """momentum_alignment and volatility_regime (``derived.SPECS`` 0, 1); spec 2 is left
    NaN (its caller evaluates it)."""
    out = np.empty((len(pos), len(idx)))
    buf = np.empty(720)
    tmp = np.empty(720)
    lc = blk[6]
    n = blk.shape[1]
    # _ref(ctx.lc): the first finite log close of the context (rows up to the last asked
    # one: when none is finite, every window holds a NaN and the value is NaN anyway)
    last = a0
    for r in range(len(pos)):
        last = max(last, a0 + pos[r])
    ref = 0.0
    for i in range(a0, min(last + 1, n)):
        if math.isfinite(lc[i]):
            ref = lc[i]
            break
    for r in range(len(pos)):
        q = a0 + pos[r]
        for j in range(len(idx)):
            k = idx[j]
            v = NAN
            if k == 0:
                if q - 75 >= a0:
                    zq = lc[q] - ref
                    s = 0.0
                    sa = 0.0
                    for w in range(15, 76, 15):
                        for i in range(w):
                            buf[i] = zq - (lc[q - 1 - i] - ref)
                        m = _psum(buf[:w]) / w
                        s += m
                        sa += abs(m)
                    v = _sdiv(s, sa)
            elif k == 1 and q - 720 >= a0:
                for i in range(720):
                    buf[i] = _ret(lc, a0, q - 719 + i)
                s720 = _std_of(buf[:720], tmp)
                s60 = _std_of(buf[660:720], tmp)
                v = _sdiv(s60, s720)
            out[r, j] = v
    return out


_IDX: dict[object, np.ndarray] = {}


def as_idx(idx: Sequence[int]) -> np.ndarray:
    """The spec indices as an int64 array (cached per tuple or range of indices)."""
    key = idx if isinstance(idx, (tuple, range)) else tuple(idx)
    a = _IDX.get(key)
    if a is None:
        if len(_IDX) > 4096:
            _IDX.clear()
        a = _IDX[key] = np.array(list(key), dtype=np.int64)
    return a
