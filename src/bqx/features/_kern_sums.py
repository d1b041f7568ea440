"""Compiled kernels shared by the point paths of the ``reg``, ``correlation`` and ``bqx``
families (see :mod:`bqx.features._jit`).

The sums here are numpy's own: :func:`np_pairwise_sum` is the pairwise summation that
``np.add.reduce`` (hence ``.sum``/``.mean``/``.std``) runs along a row of float64 values
(``numpy/_core/src/umath/loops_utils.h.src``: below 8 values a plain loop, up to 128
values eight interleaved accumulators, longer rows split in two halves at a multiple of
8). So a kernel that sums a window with it reproduces the numpy point path bit for bit
(tested against ``np.add.reduce`` in ``tests/features/test_kern_sums.py``), and each value
still depends on its own window only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from bqx.features._jit import kernel

_IDX: dict[int, tuple[Any, np.ndarray]] = {}
_RANGES: dict[tuple[int, int, int], np.ndarray] = {}


def spec_index(idx: Sequence[int]) -> np.ndarray:
    """``idx`` (a family's spec indices) as an int64 array for a kernel, kept per object
    (the online plan passes the same tuple every call) or per range (the full call makes a
    new ``range(m)`` each time). The same array for the same key: callers may key their
    own per-subset caches on it."""
    if isinstance(idx, range):
        key = (idx.start, idx.stop, idx.step)
        arr = _RANGES.get(key)
        if arr is None:
            arr = _RANGES[key] = np.arange(idx.start, idx.stop, idx.step, dtype=np.int64)
        return arr
    hit = _IDX.get(id(idx))
    if hit is not None and hit[0] is idx:
        return hit[1]
    arr = np.array(list(idx), dtype=np.int64)
    if len(_IDX) > 1024:
        _IDX.clear()
    _IDX[id(idx)] = (idx, arr)  # the object is kept alive, so its id is not reused
    return arr


def point_rows(pos: np.ndarray) -> np.ndarray:
    """``pos`` as a writeable int64 array (the plan's row arrays are read-only, which numba
    would type, and compile, separately)."""
    if pos.dtype == np.int64 and pos.flags.writeable:
        return pos
    return np.array(pos, dtype=np.int64)


#: int64 constants for kernel calls: a literal argument (``0``) is typed ``Literal[int](0)``
#: and makes numba compile the callee - and its callees - once more for that signature
I64_0 = cast(int, np.int64(0))
I64_60 = cast(int, np.int64(60))

#: numpy's PW_BLOCKSIZE: rows up to this length are summed without splitting
PW_BLOCK = 128


@kernel
def np_pairwise_leaf(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise sum of ``a[lo:lo+n]`` for ``n <= 128`` (no split)."""
    # unsigned indices: numba wraps negative (signed) indices around, a compare and a
    # select per load, which made this loop twice as slow
    u = np.uint64
    base = u(lo)
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[base + u(i)]
        return res
    r0 = a[base]
    r1 = a[base + u(1)]
    r2 = a[base + u(2)]
    r3 = a[base + u(3)]
    r4 = a[base + u(4)]
    r5 = a[base + u(5)]
    r6 = a[base + u(6)]
    r7 = a[base + u(7)]
    end = n - n % 8
    for i in range(8, end, 8):
        j = base + u(i)
        r0 += a[j]
        r1 += a[j + u(1)]
        r2 += a[j + u(2)]
        r3 += a[j + u(3)]
        r4 += a[j + u(4)]
        r5 += a[j + u(5)]
        r6 += a[j + u(6)]
        r7 += a[j + u(7)]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end, n):
        res += a[base + u(i)]
    return res


# numba compiles no self-recursive kernel here (a kernel's callees are bound before it is
# compiled), so the halving is unrolled: each level splits once and calls the next one;
# four levels cover rows of up to 128 * 2**4 = 2048 values (the longest window is 720)


@kernel
def _np_pairwise_l1(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return np_pairwise_leaf(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return np_pairwise_leaf(a, lo, n2) + np_pairwise_leaf(a, lo + n2, n - n2)


@kernel
def _np_pairwise_l2(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return np_pairwise_leaf(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _np_pairwise_l1(a, lo, n2) + _np_pairwise_l1(a, lo + n2, n - n2)


@kernel
def _np_pairwise_l3(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return np_pairwise_leaf(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _np_pairwise_l2(a, lo, n2) + _np_pairwise_l2(a, lo + n2, n - n2)


@kernel
def np_pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``np.add.reduce(a[lo:lo+n])`` bit for bit, for ``n <= 2048`` (longer: NaN, never a
    silently different order)."""
    if n <= 128:
        return np_pairwise_leaf(a, lo, n)
    if n > 2048:
        return math.nan
    n2 = n // 2
    n2 -= n2 % 8
    return _np_pairwise_l3(a, lo, n2) + _np_pairwise_l3(a, lo + n2, n - n2)


@kernel
def np_std(a: np.ndarray, n: int, tmp: np.ndarray) -> float:
    """``a[:n].std()`` (ddof 0) with numpy's steps (``_methods._var``): the mean, the
    deviations squared, their sum, the division, the square root; ``tmp`` is scratch of at
    least ``n`` values."""
    mean = np_pairwise_sum(a, I64_0, n) / n
    for i in range(n):
        x = a[i] - mean
        tmp[i] = x * x
    return math.sqrt(np_pairwise_sum(tmp, I64_0, n) / n)


@kernel
def np_max(a: np.ndarray, n: int) -> float:
    """``np.maximum.reduce(a[:n])``: NaN when any value is NaN."""
    m = a[0]
    for i in range(n):
        v = a[i]
        if math.isnan(v):
            return math.nan
        if v > m:
            m = v
    return m


@kernel
def np_min(a: np.ndarray, n: int) -> float:
    """``np.minimum.reduce(a[:n])``: NaN when any value is NaN."""
    m = a[0]
    for i in range(n):
        v = a[i]
        if math.isnan(v):
            return math.nan
        if v < m:
            m = v
    return m


@kernel
def np_clip(x: float, lo: float, hi: float) -> float:
    """numpy's ``clip`` of one value (``clip.cpp``: ``_NPY_MIN(_NPY_MAX(x, lo), hi)``, NaN
    stays NaN)."""
    if math.isnan(x):
        return x
    y = x if x > lo else lo
    return y if y < hi else hi


@kernel
def moments_leaf(
    x: np.ndarray, lo: int, ref: float, p1: np.ndarray, p2: np.ndarray, plo: int, n: int
) -> tuple[float, float, float, float]:
    """numpy's pairwise sums (``n <= 128``) of z, z*p1, z*p2 and z*z over ``i < n``, with
    z = ``x[lo+i] - ref`` and the basis values ``p1[plo+i]``, ``p2[plo+i]``: the four
    moments of a window, each summed as :func:`np_pairwise_leaf` sums its products (eight
    interleaved accumulators; starting them at 0.0 and adding the first eight products
    gives those products, as numpy's start does). Two passes of two sums each: one pass of
    32 accumulators spilled registers and ran ~1.6x slower."""
    u = np.uint64
    xb = u(lo)
    pb = u(plo)
    if n < 8:
        s0 = s1 = s2 = s3 = 0.0
        for i in range(n):
            z = x[xb + u(i)] - ref
            s0 += z
            s1 += z * p1[pb + u(i)]
            s2 += z * p2[pb + u(i)]
            s3 += z * z
        return s0, s1, s2, s3
    end = n - n % 8
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
    for i in range(0, end, 8):
        j = xb + u(i)
        z0 = x[j] - ref
        z1 = x[j + u(1)] - ref
        z2 = x[j + u(2)] - ref
        z3 = x[j + u(3)] - ref
        z4 = x[j + u(4)] - ref
        z5 = x[j + u(5)] - ref
        z6 = x[j + u(6)] - ref
        z7 = x[j + u(7)] - ref
        a0 += z0
        a1 += z1
        a2 += z2
        a3 += z3
        a4 += z4
        a5 += z5
        a6 += z6
        a7 += z7
        b0 += z0 * z0
        b1 += z1 * z1
        b2 += z2 * z2
        b3 += z3 * z3
        b4 += z4 * z4
        b5 += z5 * z5
        b6 += z6 * z6
        b7 += z7 * z7
    s0 = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    s3 = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
    for i in range(0, end, 8):
        j = xb + u(i)
        k = pb + u(i)
        z0 = x[j] - ref
        z1 = x[j + u(1)] - ref
        z2 = x[j + u(2)] - ref
        z3 = x[j + u(3)] - ref
        z4 = x[j + u(4)] - ref
        z5 = x[j + u(5)] - ref
        z6 = x[j + u(6)] - ref
        z7 = x[j + u(7)] - ref
        a0 += z0 * p1[k]
        a1 += z1 * p1[k + u(1)]
        a2 += z2 * p1[k + u(2)]
        a3 += z3 * p1[k + u(3)]
        a4 += z4 * p1[k + u(4)]
        a5 += z5 * p1[k + u(5)]
        a6 += z6 * p1[k + u(6)]
        a7 += z7 * p1[k + u(7)]
        b0 += z0 * p2[k]
        b1 += z1 * p2[k + u(1)]
        b2 += z2 * p2[k + u(2)]
        b3 += z3 * p2[k + u(3)]
        b4 += z4 * p2[k + u(4)]
        b5 += z5 * p2[k + u(5)]
        b6 += z6 * p2[k + u(6)]
        b7 += z7 * p2[k + u(7)]
    s1 = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    s2 = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))
    for i in range(end, n):
        z = x[xb + u(i)] - ref
        s0 += z
        s1 += z * p1[pb + u(i)]
        s2 += z * p2[pb + u(i)]
        s3 += z * z
    return s0, s1, s2, s3


@kernel
def _moments_l1(
    x: np.ndarray, lo: int, ref: float, p1: np.ndarray, p2: np.ndarray, plo: int, n: int
) -> tuple[float, float, float, float]:
    if n <= 128:
        return moments_leaf(x, lo, ref, p1, p2, plo, n)
    n2 = n // 2
    n2 -= n2 % 8
    a = moments_leaf(x, lo, ref, p1, p2, plo, n2)
    b = moments_leaf(x, lo + n2, ref, p1, p2, plo + n2, n - n2)
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


@kernel
def _moments_l2(
    x: np.ndarray, lo: int, ref: float, p1: np.ndarray, p2: np.ndarray, plo: int, n: int
) -> tuple[float, float, float, float]:
    if n <= 128:
        return moments_leaf(x, lo, ref, p1, p2, plo, n)
    n2 = n // 2
    n2 -= n2 % 8
    a = _moments_l1(x, lo, ref, p1, p2, plo, n2)
    b = _moments_l1(x, lo + n2, ref, p1, p2, plo + n2, n - n2)
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


@kernel
def moments(
    x: np.ndarray, lo: int, ref: float, p1: np.ndarray, p2: np.ndarray, n: int
) -> tuple[float, float, float, float]:
    """The four moments of the window ``x[lo:lo+n] - ref`` against the basis columns
    ``p1[:n]``, ``p2[:n]`` (sum z, z*P1, z*P2, z*z), each numpy's pairwise sum of its
    products, for ``n <= 1024`` (longer: NaN)."""
    if n <= 128:
        return moments_leaf(x, lo, ref, p1, p2, I64_0, n)
    if n > 1024:
        return math.nan, math.nan, math.nan, math.nan
    n2 = n // 2
    n2 -= n2 % 8
    a = _moments_l2(x, lo, ref, p1, p2, I64_0, n2)
    b = _moments_l2(x, lo + n2, ref, p1, p2, n2, n - n2)
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]
