"""Cases for tests/features/test_jit.py: the technical family's online kernels (compiled vs
plain Python, bit for bit: they use + - * /, abs and comparisons only), on random price
series with NaNs (a gap, single missing bars) and random rows, including rows near the
start (incomplete windows)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bqx.features import _kern_windows as K
from bqx.features.families import technical as T

N = 1600


def _bars(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    c = 1.1 + np.cumsum(rng.normal(0, 2e-4, N))
    h = c + np.abs(rng.normal(0, 1e-4, N))
    lo = c - np.abs(rng.normal(0, 1e-4, N))
    v = rng.integers(1, 50, N).astype(float)
    g = int(rng.integers(300, 1200))
    for x in (c, h, lo, v):
        x[g : g + 12] = np.nan  # a gap
    c[int(rng.integers(0, N))] = np.nan  # a lone missing close
    lo[int(rng.integers(0, N))] = np.nan  # a lone missing low (close present)
    return c, h, lo, v


def _pos(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        t = int(rng.integers(250, N))
        p = t - np.array([0, 60, 120, 180, 240, 61])
    else:
        p = rng.integers(0, N, int(rng.integers(1, 7)))
    return p.astype(np.int64)


def _run(rng: np.random.Generator) -> tuple[int, int]:
    """A run of rows: mostly late (complete windows), sometimes from the first rows."""
    b = int(rng.integers(0, N)) if rng.random() < 0.2 else int(rng.integers(N - 300, N))
    return int(rng.integers(max(b - 300, 0), b + 1)), b


def _series(rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(1.0, 0.1, N)
    x[rng.integers(0, N, int(rng.integers(0, 3)))] = np.nan
    return x


def _ema_rows_args(rng: np.random.Generator) -> tuple[Any, ...]:
    alpha, w, beta = K.ema_params(float(rng.choice([0.5, 1 / 14, 2 / 27, 2 / 101])))
    a, b = _run(rng)
    s = max(a - w + 1, 0)
    return _series(rng)[s:], s, a, b, alpha, w, beta


def _t(rng: np.random.Generator) -> int:
    return int(rng.integers(0, N))


def _col_args(rng: np.random.Generator) -> tuple[Any, ...]:
    p = _pos(rng)
    return _bars(rng)[0], p, int(p.min()), int(p.max())


def _pt_args(rng: np.random.Generator) -> tuple[Any, ...]:
    idx = rng.permutation(45)[: int(rng.integers(1, 46))].astype(np.int64)
    return (*_bars(rng), _pos(rng), idx)


CASES = {
    "safe_div1": (
        K.safe_div1,
        lambda rng: (float(rng.choice([1.0, 0.0, np.nan, -2.0])), float(rng.choice([0.0, 3.0]))),
        True,
    ),
    "ema_rows": (K.ema_rows, _ema_rows_args, True),
    "win_sum": (K.win_sum, lambda rng: (_series(rng), _t(rng), int(rng.integers(1, 60))), True),
    "win_max": (K.win_max, lambda rng: (_series(rng), _t(rng), int(rng.integers(1, 60))), True),
    "win_min": (K.win_min, lambda rng: (_series(rng), _t(rng), int(rng.integers(1, 60))), True),
    "true_range_at": (K.true_range_at, lambda rng: (*_bars(rng)[:3], _t(rng)), True),
    "_rsi_run": (T._rsi_run, lambda rng: (_bars(rng)[0], *_run(rng), T._P14), True),
    "_tr_run": (T._tr_run, lambda rng: (*_bars(rng)[:3], *_run(rng)), True),
    "_atr_run": (T._atr_run, lambda rng: (*_bars(rng)[:3], *_run(rng), T._P28), True),
    "_di_run": (T._di_run, lambda rng: (*_bars(rng)[:3], *_run(rng)), True),
    "_adx_run": (T._adx_run, lambda rng: (*_bars(rng)[:3], *_run(rng)), True),
    "_macd_run": (T._macd_run, lambda rng: (_bars(rng)[0], *_run(rng)), True),
    "_k14_at": (T._k14_at, lambda rng: (*_bars(rng)[:3], _t(rng)), True),
    "_cci_at": (T._cci_at, lambda rng: (*_bars(rng)[:3], _t(rng)), True),
    "_mfi_at": (T._mfi_at, lambda rng: (*_bars(rng), _t(rng)), True),
    "_bars_since_extreme": (
        T._bars_since_extreme,
        lambda rng: (np.round(_series(rng), 1), _t(rng), 26, float(rng.choice([1.0, -1.0]))),
        True,
    ),
    "_ultosc_at": (T._ultosc_at, lambda rng: (*_bars(rng)[:3], _t(rng)), True),
    "_cmo_at": (T._cmo_at, lambda rng: (_bars(rng)[0], _t(rng)), True),
    "_vortex_at": (T._vortex_at, lambda rng: (*_bars(rng)[:3], _t(rng)), True),
    "_trix_col": (T._trix_col, _col_args, True),
    "_stochrsi_col": (T._stochrsi_col, _col_args, True),
    "_ema_col": (T._ema_col, lambda rng: (*_col_args(rng), T._PS20), True),
    "_technical_pt": (T._technical_pt, _pt_args, True),
}
