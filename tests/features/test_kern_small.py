"""The compiled point kernels of the small families (spread, fibonacci, volume, stats,
bollinger, derived) and the per-panel pair block they read (issue 15: the online feature
path without per-call numpy overhead).

* the kernels' window sums are numpy's pairwise summation: equal to ``np.add.reduce`` bit
  for bit, so means and standard deviations equal the numpy point primitives they
  replace bit for bit (checked here on the families' own values);
* the pair block's log close is the log of the pair's column alone, the same bits as the
  whole panel's log; the ``only=`` call no longer takes the log of the whole panel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.features import _kern_small as K
from bqx.features import _ops as O
from bqx.features.context import BLOCK_FIELDS, Ctx, pair_block
from bqx.features.panel import Panel


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def test_pairwise_sum_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for n in [*range(0, 140), 200, 239, 240, 255, 256, 257, 480, 600, 720, 1000, 2048]:
        x = rng.normal(0, 1, n + 5) * 10 ** rng.uniform(-6, 6, n + 5)
        for a in (0, 3):
            want = np.add.reduce(x[a : a + n].reshape(1, n), 1)[0]
            got = K._psum(x[a : a + n])
            assert got == want or (np.isnan(got) and np.isnan(want)), (n, a)
    # a NaN anywhere in the window gives NaN
    x = np.ones(300)
    x[177] = np.nan
    assert np.isnan(K._psum(x)) and K._psum(x[178:278]) == 100.0


def _fresh(panel: Panel) -> Panel:
    """A copy of ``panel`` without its per-panel caches and without its log (a view of the
    session panel would share the log another test may already have taken)."""
    fresh = panel.slice_rows(0, len(panel))
    fresh._lc = None
    return fresh


def test_pair_block_equals_the_panel_columns_and_its_log_bit_for_bit(panel_medium):
    fresh = _fresh(panel_medium)  # no per-panel caches, no log
    assert fresh._lc is None
    full_log = np.log(panel_medium.close)
    for pair in ("EURUSD", "USDJPY", "GBPNZD", "AUDCAD"):
        j = fresh.col(pair)
        blk = pair_block(fresh, j)
        assert blk.flags.c_contiguous and blk.shape == (7, len(fresh))
        for k, f in enumerate(BLOCK_FIELDS[:-1]):
            assert np.array_equal(blk[k], getattr(fresh, f)[:, j], equal_nan=True), f
        assert (_bits(blk[-1]) == _bits(full_log[:, j])).all(), pair
        # a context's arrays are views of the block
        ctx = Ctx.window(fresh, pair, j, 100, 400)
        assert np.shares_memory(ctx.c, blk) and (_bits(ctx.lc) == _bits(full_log[100:400, j])).all()
    assert fresh._lc is None  # the blocks did not take the whole panel's log


def test_the_subset_call_does_not_take_the_log_of_the_whole_panel(panel_medium):
    fresh = _fresh(panel_medium)
    ts = fresh.timestamps()[-1]
    cols = F.columns()
    only = [c for c in cols if c.startswith(("csi_", "spread_", "fib_", "vol_", "bb_", "rvol"))]
    sub, _ = F.at_array(fresh, "USDJPY", ts, only=only)
    assert fresh._lc is None
    full, _ = F.at_array(panel_medium, "USDJPY", ts)
    ix = [cols.index(c) for c in only]
    assert np.array_equal(sub[ix], full[ix], equal_nan=True)


@pytest.fixture(scope="module")
def gap_ctx(bars_small: pd.DataFrame) -> tuple[Panel, str]:
    """bars_small with a run of 20 missing EURUSD bars (NaN rows)."""
    ts = np.sort(bars_small.ts.unique())
    drop = (bars_small.pair == "EURUSD") & bars_small.ts.between(ts[2500], ts[2519])
    return Panel.from_bars(bars_small[~drop].reset_index(drop=True)), "EURUSD"


def _numpy_values(ctx: Ctx, pos: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """The features whose numpy point expressions use only sums, means, standard
    deviations, max / min and divisions (the previous online path's arithmetic)."""
    s, v, c, r = ctx.s, ctx.v, ctx.c, ctx.r
    m, sd, mx, mn, dv = O.mean_pt, O.std_pt, O.max_pt, O.min_pt, O.safe_div
    out: dict[tuple[str, int], np.ndarray] = {}
    for k, w in ((2, 15), (3, 60), (4, 240)):
        out[("spread", k)] = dv(s[pos], m(s, w, pos))
    out[("spread", 5)] = dv(s[pos] - m(s, 60, pos), sd(s, 60, pos))
    out[("spread", 7)] = dv(mx(s, 60, pos), m(s, 60, pos))
    out[("spread", 8)] = dv(sd(s, 60, pos), m(s, 60, pos))
    out[("spread", 12)] = dv(s[pos] - mn(s, 240, pos), mx(s, 240, pos) - mn(s, 240, pos))
    for k, w in ((1, 15), (2, 60), (3, 240)):
        out[("volume", k)] = dv(v[pos], m(v, w, pos))
    out[("volume", 4)] = dv(v[pos] - m(v, 60, pos), sd(v, 60, pos))
    tpv = (ctx.h + ctx.l + c) / 3.0 * v
    vwap = dv(O.sum_pt(tpv, 60, pos), O.sum_pt(v, 60, pos))
    out[("volume", 7)] = dv(c[pos] - vwap, c[pos])
    out[("volume", 9)] = O.corr_pt(np.abs(r), v, 60, pos)
    out[("stats", 4)] = sd(r, 60, pos)
    for k, w in ((0, 20), (2, 50)):
        mid, dev = m(c, w, pos), sd(c, w, pos)
        out[("bollinger", k)] = dv(c[pos] - (mid - 2 * dev), 4 * dev)
        out[("bollinger", k + 1)] = dv(4 * dev, mid)
    out[("derived", 1)] = dv(sd(r, 60, pos), sd(r, 720, pos))
    return out


def test_kernels_equal_the_numpy_point_expressions_bit_for_bit(gap_ctx):
    """Sums, means and standard deviations in the kernels are numpy's own (pairwise sums,
    two-pass deviations): the values equal the numpy point primitives bit for bit, next to
    a gap (NaN windows), at the start of the data (short windows) and far from both."""
    from bqx.features.families import FAMILIES

    panel, pair = gap_ctx
    fams = {f.name: f for f in FAMILIES}
    j = panel.col(pair)
    n = len(panel)
    checked = 0
    for p in (30, 70, 300, 2505, 2530, 2600, 2750, n - 1):
        c0 = max(0, p - 800)
        ctx = Ctx.window(panel, pair, j, c0, p + 1)
        pos = np.array([p - c0])
        with np.errstate(all="ignore"):
            want = _numpy_values(Ctx.window(panel, pair, j, c0, p + 1), pos)
            for (name, k), w in want.items():
                got = fams[name].compute_online(ctx, pos, (k,))[:, 0]
                assert (_bits(got) == _bits(w)).all(), (name, k, p, got, w)
                checked += int(np.isfinite(w).sum())
    assert checked > 80  # numbers (not NaN on both sides) at the rows away from gap and start


def test_spread_two_bar_terms_equal_the_batch_series(gap_ctx):
    """The Corwin-Schultz and Abdi-Ranaldo terms filled over a run of rows (each row's logs
    taken once and reused by the next row) equal the same terms row by row bit for bit,
    and the numpy series of spread.compute to an ulp-level tolerance (libm's log and exp
    against numpy's), NaN exactly where the series is NaN (the gap, the first row)."""
    from bqx.features.families import spread

    panel, pair = gap_ctx
    j = panel.col(pair)
    c0, stop = 2300, 2800
    ctx = Ctx(panel.slice_rows(c0, stop), pair)
    with np.errstate(all="ignore"):
        cs_np, ar_np = spread._cs_ar(ctx)
    blk, a0 = pair_block(panel, j), c0
    k = 3.0 - 2.0 * np.sqrt(2.0)
    cs = K._cs_fill(blk, a0, c0, stop - c0, k)
    ar = K._ar_fill(blk, a0, c0, stop - c0)
    one_cs = np.array([K._cs_fill(blk, a0, i, 1, k)[0] for i in range(c0, stop)])
    one_ar = np.array([K._ar_fill(blk, a0, i, 1)[0] for i in range(c0, stop)])
    assert (_bits(cs) == _bits(one_cs)).all() and (_bits(ar) == _bits(one_ar)).all()
    for got, want in ((cs, cs_np), (ar, ar_np)):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got).sum() > 10  # the gap and the first row
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-18)


def test_warm_up_compiles_the_family_kernels_in_a_fresh_process():
    """``warm_up()`` (called by a live service's start, before it reports ready) runs every
    family's point path once: in a fresh process, each family kernel is compiled (or
    loaded from the disk cache) afterwards, and the warmed calls are then quick."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "from bqx.features.pipeline import warm_up\n"
        "from bqx.features import _kern_small as K\n"
        "warm_up()\n"
        "ks = [K.spread_kernel, K.fib_kernel, K.volume_kernel, K.stats_kernel,\n"
        "      K.bollinger_kernel, K.derived_kernel]\n"
        "t = time.perf_counter(); warm_up(); again = time.perf_counter() - t\n"
        "print(all(k.dispatcher is not None for k in ks), again < 0.5)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    assert out == ["True", "True"]


def test_warm_families_compiles_only_those_families(tmp_path):
    """A cold cache's warm-up splits the families over two processes
    (``warm_families``): each compiles only its own families' kernels, into the cache
    directory it is given; the marker of a finished warm-up lives in that directory."""
    import os
    import subprocess
    import sys

    code = (
        "from bqx.features import _jit, _kern_small as K\n"
        "from bqx.features.pipeline import warm_families\n"
        "warm_families(['bollinger'])\n"
        "print(K.bollinger_kernel.dispatcher is not None, K.spread_kernel.dispatcher is None,"
        " _jit.warm_marker().parent == __import__('pathlib').Path(__import__('os')"
        ".environ['NUMBA_CACHE_DIR']))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
        env=env,
    ).stdout.split()  # fmt: skip
    assert out == ["True", "True", "True"]
    assert any(tmp_path.rglob("*.nbi"))  # the compiled kernel went to that cache
