"""Compiled-vs-Python cases for the kernels of the reg, correlation and bqx point paths
(run by ``tests/features/test_jit.py``): random inputs with NaNs, every kernel exact (they
use only + - * / and sqrt, which IEEE rounds the same in both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bqx.features import _kern_sums as K
from bqx.features.families import bqx as B
from bqx.features.families import correlation as C
from bqx.features.families import reg as R


def _series(rng: np.random.Generator, n: int, nans: int = 3) -> np.ndarray:
    x = 0.01 + np.cumsum(rng.normal(0, 1e-4, n))
    x[rng.integers(0, n, nans)] = np.nan
    return x


def _sum_args(rng: np.random.Generator) -> tuple[Any, ...]:
    a = rng.standard_normal(900) * 10.0 ** rng.integers(-3, 4)
    if rng.random() < 0.5:
        a[rng.integers(0, 900)] = np.nan
    n = int(rng.integers(1, 850))
    return a, int(rng.integers(0, 900 - n)), n


def _leaf_args(rng: np.random.Generator) -> tuple[Any, ...]:
    a, lo, _ = _sum_args(rng)
    return a, lo, int(rng.integers(0, 129))


def _std_args(rng: np.random.Generator) -> tuple[Any, ...]:
    a = rng.standard_normal(80)
    a[rng.integers(0, 80)] = np.nan if rng.random() < 0.3 else a[0]
    return a, int(rng.integers(1, 80)), np.empty(80)


def _ro(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _mom_args(rng: np.random.Generator, leaf: bool, plo: bool = False) -> tuple[Any, ...]:
    j = int(rng.integers(0, len(R.WINDOWS)))
    x = _series(rng, 900, nans=1)
    w = int(rng.integers(1, 129)) if leaf else R.WINDOWS[j]
    lo = int(rng.integers(0, 900 - w))
    if leaf:
        return x, lo, 0.01, _ro(R._P1[j]), _ro(R._P2[j]), int(rng.integers(0, R.WMAX - w)), w
    p1, p2 = _ro(R._P1[j]), _ro(R._P2[j])  # as the reg kernel passes them (constants)
    if plo:  # an inner level: the basis offset too
        return x, lo, 0.01, p1, p2, 0, w
    return x, lo, 0.01, p1, p2, w


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """t and its lags, with rows near the start (short windows)."""
    t = int(rng.integers(0, n))
    return np.array([t, *(q for q in (t - 60, t - 120, t - 15, 3, 0) if q >= 0)], dtype=np.int64)


def _idx(rng: np.random.Generator, k: int) -> np.ndarray:
    return np.sort(rng.choice(k, int(rng.integers(1, k + 1)), replace=False)).astype(np.int64)


def _reg_args(rng: np.random.Generator) -> tuple[Any, ...]:
    lc = _series(rng, 900, nans=2)
    return lc, 0.01, _rows(rng, 900), _idx(rng, len(R.FAMILY.specs))


def _bqx_args(rng: np.random.Generator) -> tuple[Any, ...]:
    lc = _series(rng, 400, nans=2)
    r = np.diff(lc, prepend=np.nan)
    return lc, 0.01, r, _rows(rng, 400), _idx(rng, len(B.FAMILY.specs))


def _ccy_matrix(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lc = np.cumsum(rng.normal(0, 1e-4, (n, 28)), axis=0)
    lc[rng.integers(0, n, 3), rng.integers(0, 28, 3)] = np.nan
    r = np.full((8, n), np.nan)
    for c in range(8):
        r[c, 1:] = rng.normal(0, 1e-4, n - 1)
    r[rng.integers(0, 8, 2), rng.integers(0, n, 2)] = np.nan
    return lc, r


def _ccy_ret_args(rng: np.random.Generator) -> tuple[Any, ...]:
    lc, _ = _ccy_matrix(rng, 300)
    cols = rng.choice(28, 7, replace=False).astype(np.int64)
    signs = np.where(rng.random(7) < 0.5, -1.0, 1.0) / 7
    return lc, int(rng.integers(0, 200)), cols, signs


def _corr_window_args(rng: np.random.Generator) -> tuple[Any, ...]:
    w = int(rng.choice([60, 240, 720]))
    x = rng.normal(0, 1e-4, w)
    y = 0.3 * x + rng.normal(0, 1e-4, w)
    if rng.random() < 0.3:
        y[:] = 1e-4  # a constant side: below the 1e-30 floor, NaN
    elif rng.random() < 0.5:
        x[rng.integers(0, w)] = np.nan
    return x, y, w, np.empty(w), np.empty(w), np.empty(w)


def _corr_args(rng: np.random.Generator) -> tuple[Any, ...]:
    n = 900
    _, rc = _ccy_matrix(rng, n + 20)
    r = rng.normal(0, 1e-4, n)
    r[rng.integers(0, n, 2)] = np.nan
    mkt = np.abs(rng.normal(0, 1e-4, n))
    cc = rng.choice(8, 7, replace=False).astype(np.int64)
    return r, mkt, rc, int(rng.integers(0, 20)), cc, _rows(rng, n), _idx(rng, len(C.SPECS))


CASES: dict[str, tuple[Any, Callable[[np.random.Generator], tuple[Any, ...]], bool]] = {
    k.__qualname__: (k, f, True)
    for k, f in (
        (K.np_pairwise_leaf, _leaf_args),
        (K._np_pairwise_l1, _sum_args),
        (K._np_pairwise_l2, _sum_args),
        (K._np_pairwise_l3, _sum_args),
        (K.np_pairwise_sum, _sum_args),
        (K.np_std, _std_args),
        (K.np_max, lambda rng: _std_args(rng)[:2]),
        (K.np_min, lambda rng: _std_args(rng)[:2]),
        (K.np_clip, lambda rng: (float(rng.choice([np.nan, -2.0, 0.5, 3.0, -0.0])), 0.0, 1.0)),
        (K.moments_leaf, lambda rng: _mom_args(rng, True)),
        (K._moments_l1, lambda rng: _mom_args(rng, False, True)),
        (K._moments_l2, lambda rng: _mom_args(rng, False, True)),
        (K.moments, lambda rng: _mom_args(rng, False)),
        (R.reg_point_kernel, _reg_args),
        (
            B.bqx_avg_point,
            lambda rng: (_series(rng, 200), 0.01, int(rng.integers(-5, 200)), 60, np.empty(75)),
        ),
        (B.bqx_point_kernel, _bqx_args),
        (C.ccy_returns_kernel, _ccy_ret_args),
        (C.corr_window, _corr_window_args),
        (C.corr_point_kernel, _corr_args),
    )
}
