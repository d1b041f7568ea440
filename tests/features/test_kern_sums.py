"""The compiled point paths of the reg, correlation and bqx families (issue 15): numpy's
summation reproduced, each family's kernel against the family's numpy arithmetic on the
same rows, and each value independent of the other specs asked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.features import _kern_sums as K
from bqx.features.context import Ctx
from bqx.features.families import bqx as B
from bqx.features.families import correlation as C
from bqx.features.families import reg as R
from bqx.features.panel import Panel


@pytest.fixture(scope="module")
def panel(bars_small: pd.DataFrame) -> Panel:
    return Panel.from_bars(bars_small)


def _rows(n: int, t: int, lagged: bool) -> np.ndarray:
    rel = [0, 60, 120, 180, 240, 61] if lagged else [0]
    return np.array([t - r for r in rel if t - r >= 0], dtype=np.int64)


def test_pairwise_sum_std_and_moments_are_numpys_bit_for_bit():
    rng = np.random.default_rng(7)
    a = rng.standard_normal(3000) * 1e3 + 1e5
    for n in [*range(1, 300), 383, 384, 385, 630, 720, 721, 1000, 2048]:
        lo = int(rng.integers(0, 900))
        assert K.np_pairwise_sum(a, lo, n) == np.add.reduce(a[lo : lo + n]), n
        # a plain left-to-right sum differs (so the test would see another order)
    lo, n = 5, 720
    assert sum(a[lo : lo + n].tolist()) != np.add.reduce(a[lo : lo + n])
    for n in (1, 5, 59, 60, 75):
        x = rng.standard_normal(n)
        assert K.np_std(x, n, np.empty(n)) == x.std()
    lc = 0.3 + np.cumsum(rng.normal(0, 1e-4, 900))
    for j, w in enumerate(R.WINDOWS):
        z = lc[100 : 100 + w] - 0.3
        p1, p2 = R._P1[j, :w], R._P2[j, :w]
        want = [np.add.reduce(v) for v in (z, z * p1, z * p2, z * z)]
        assert list(K.moments(lc, 100, 0.3, R._P1[j], R._P2[j], w)) == want, w


def test_bqx_kernel_equals_the_numpy_point_arithmetic_bit_for_bit(panel):
    """compute() on a few rows takes _block_at's gathered-window branch (numpy): the
    kernel gives the same bits for all 40 specs, at rows with short history too."""
    ctx = Ctx(panel, "GBPJPY")
    all_ix = tuple(range(len(B.FAMILY.specs)))
    for t in (0, 14, 15, 59, 74, 76, 150, 151, 400, ctx.n - 1):
        pos = _rows(ctx.n, t, True)
        with np.errstate(all="ignore"):
            want = B.compute(ctx, pos)
        got = B.compute_online(ctx, pos, all_ix)
        assert np.array_equal(got, want, equal_nan=True), t
    assert np.isfinite(got).all()  # the last rows have full history


@pytest.mark.parametrize("fam", [R, C], ids=["reg", "correlation"])
def test_reg_and_correlation_kernels_equal_the_numpy_point_arithmetic(panel, fam):
    """reg's numpy point path summed its moments with BLAS and correlation's currency
    returns came from BLAS: the same values to rounding (seen: 1.4e-11 relative on an R²),
    NaN at the same places."""
    ctx = Ctx(panel, "AUDNZD")
    specs = fam.FAMILY.specs
    lagged = fam.FAMILY.lagged
    for t in (3, 60, 239, 240, 629, 630, 719, 720, 721, 2000, ctx.n - 1):
        pos = _rows(ctx.n, t, lagged)
        with np.errstate(all="ignore"):
            want = fam.FAMILY.compute(ctx, pos)
        got = fam.FAMILY.compute_online(ctx, pos, tuple(range(len(specs))))
        assert np.array_equal(np.isnan(got), np.isnan(want)), t
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=1e-14, err_msg=str(t))
    assert np.isfinite(got).all()


@pytest.mark.parametrize("fam", [R, C, B], ids=["reg", "correlation", "bqx"])
def test_a_value_does_not_depend_on_the_other_specs_asked(panel, fam):
    ctx = Ctx(panel, "EURCHF")
    k = len(fam.FAMILY.specs)
    pos = _rows(ctx.n, ctx.n - 1, fam.FAMILY.lagged)
    full = fam.FAMILY.compute_online(ctx, pos, range(k))
    rng = np.random.default_rng(k)
    for _ in range(5):
        ix = tuple(int(i) for i in rng.choice(k, int(rng.integers(1, k)), replace=False))
        sub = fam.FAMILY.compute_online(Ctx(panel, "EURCHF"), pos, ix)
        assert np.array_equal(sub, full[:, list(ix)], equal_nan=True), ix


def test_currency_returns_per_panel_start_where_the_first_window_does(panel):
    """The per-panel currency returns are taken from the first asking window's start, then
    from row 0 when an earlier window asks; a window's values do not depend on which."""
    n = len(panel)
    j = panel.col("NZDCAD")
    fresh = panel.slice_rows(0, n)
    late = Ctx.window(fresh, "NZDCAD", j, n - 721, n)
    ix = tuple(range(len(C.SPECS)))
    a = C.compute_online(late, np.array([720]), ix)
    assert fresh._cache[C._CCY_KEY][0] == n - 721
    early = Ctx.window(fresh, "NZDCAD", j, 1000, 1721)
    b = C.compute_online(early, np.array([720]), ix)
    assert fresh._cache[C._CCY_KEY][0] == 0
    other = panel.slice_rows(0, n)  # a new panel whose first window is the early one
    b2 = C.compute_online(Ctx.window(other, "NZDCAD", j, 1000, 1721), np.array([720]), ix)
    a2 = C.compute_online(Ctx.window(other, "NZDCAD", j, n - 721, n), np.array([720]), ix)
    assert np.array_equal(a, a2, equal_nan=True) and np.array_equal(b, b2, equal_nan=True)
    assert np.isfinite(a).all() and np.isfinite(b).all()
