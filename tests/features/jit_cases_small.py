"""Kernel cases of the jitsmall branch (spread, fibonacci, volume, stats, bollinger,
derived point kernels and their helpers) for ``tests/features/test_jit.py``: random pair
blocks with NaNs, compiled against the plain-Python function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bqx.features import _kern_small as K
from bqx.features._ops import ema_kernel


def _block(rng: np.random.Generator, n: int = 1200) -> np.ndarray:
    c = 1.1 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    h = c * np.exp(np.abs(rng.normal(0, 1e-4, n)))
    lo = c * np.exp(-np.abs(rng.normal(0, 1e-4, n)))
    o = np.r_[c[0], c[:-1]]
    v = rng.poisson(30, n).astype(float)
    s = np.abs(rng.normal(1e-4, 2e-5, n))
    b = np.stack([o, h, lo, c, v, s, np.log(c)])
    for k in range(7):  # NaN runs (missing bars) in every field
        a = int(rng.integers(0, n - 10))
        b[k, a : a + int(rng.integers(1, 6))] = np.nan
    return np.ascontiguousarray(b)


def _fam_args(m: int, extra: Callable[[], tuple[Any, ...]] = tuple) -> Callable[..., tuple]:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        blk = _block(rng)
        a0 = int(rng.integers(0, 100))
        # rows near the context's start (short windows: NaN) and far from it
        pos = np.array([0, 3, 61, 130, 300, 700, 900, 1050], dtype=np.int64)
        idx = rng.permutation(m).astype(np.int64)
        return (blk, a0, pos, idx, *extra())

    return make


def _vec(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.normal(0, 1, 900) * 10 ** rng.uniform(-3, 3, 900)
    x[int(rng.integers(0, 900))] = np.nan if rng.random() < 0.5 else x[0]
    a = int(rng.integers(0, 50))
    return (x[a : a + int(rng.integers(1, 800))],)


def _window(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.normal(0, 1, 900)
    x[int(rng.integers(0, 900))] = np.nan
    a = int(rng.integers(0, 50))
    return (x, a, a + int(rng.integers(1, 800)))


def _blk_row(rng: np.random.Generator) -> tuple[Any, ...]:
    blk = _block(rng)
    return (blk, 5, int(rng.integers(0, 400)))


def _stats_buf(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.normal(0, 1e-3, 300)
    x[int(rng.integers(0, 300))] = np.nan if rng.random() < 0.5 else 0.0
    return (x[: int(rng.integers(1, 300))], np.empty(300))


def _corr_bufs(rng: np.random.Generator) -> tuple[Any, ...]:
    x, y = rng.normal(0, 1e-3, 60), rng.normal(0, 1, 60)
    if rng.random() < 0.5:
        y[:] = 1.0  # constant: den 0, NaN
    return (x, y, 60)


def _mean_args(rng: np.random.Generator) -> tuple[Any, ...]:
    blk = _block(rng)
    return (blk[int(rng.integers(0, 7))], int(rng.integers(0, 1200)), 60, 7)


def _std_args(rng: np.random.Generator) -> tuple[Any, ...]:
    return (*_mean_args(rng), np.empty(256))


def _band_args(rng: np.random.Generator) -> tuple[Any, ...]:
    blk = _block(rng)
    return (blk, 3, int(rng.integers(0, 1200)), 20, np.empty(64))


def _corr_args(rng: np.random.Generator) -> tuple[Any, ...]:
    blk = _block(rng)
    return (blk, 3, int(rng.integers(0, 1200)), 60, np.empty(64), np.empty(64))


CASES: dict[str, tuple[Any, Callable[[np.random.Generator], tuple[Any, ...]], bool]] = {
    "_psum": (K._psum, _vec, True),
    "_std_of": (K._std_of, _stats_buf, True),
    "_sdiv": (
        K._sdiv,
        lambda r: (np.float64(r.normal()), np.float64(r.choice([0.0, 1e-300, 2.0]))),
        True,
    ),
    "_wmax": (K._wmax, _window, True),
    "_wmin": (K._wmin, _window, True),
    "_ret": (K._ret, lambda r: (np.log(r.uniform(1, 2, 50)), 3, int(r.integers(0, 50))), True),
    "_tr": (K._tr, _blk_row, True),
    "_cs_fill": (
        K._cs_fill,
        lambda r: (*_blk_row(r), 240, 3.0 - 2.0 * np.sqrt(2.0)),
        False,
    ),
    "_ar_fill": (K._ar_fill, lambda r: (*_blk_row(r), 240), False),
    "_mean_w": (K._mean_w, _mean_args, True),
    "_std_w": (K._std_w, _std_args, True),
    "_corr_of": (K._corr_of, _corr_bufs, True),
    "_corr": (K._corr, _corr_args, True),
    "_band": (K._band, _band_args, True),
    "spread_kernel": (
        K.spread_kernel,
        _fam_args(20, lambda: (1e-4, ema_kernel(1.0 / 14))),
        False,
    ),
    "fib_kernel": (
        K.fib_kernel,
        _fam_args(12, lambda: (np.array([0.236, 0.382, 0.5, 0.618, 0.786]),)),
        True,
    ),
    "volume_kernel": (K.volume_kernel, _fam_args(10), False),
    "stats_kernel": (K.stats_kernel, _fam_args(5), False),
    "bollinger_kernel": (K.bollinger_kernel, _fam_args(5), True),
    "derived_kernel": (K.derived_kernel, _fam_args(3), True),
}
