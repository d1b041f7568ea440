"""The online point path (issue 15 item 4): every family evaluates each requested value from
the rows its window reads, not full series over the history window.

* the point primitives equal the series primitives (exactly for max/min/arg-max, to 1e-12
  for sums, whose order differs), NaN exactly where the series has NaN;
* ``at_array(only=...)`` equals the full online call bit for bit for random subsets at random
  bars, next to a gap in the pair's bars, at the weekend boundary and at the first bars;
* both equal the batch build to 5e-10 of each column's scale, NaN exactly where the batch
  has NaN, and bit for bit for the families whose point path only compares or indexes
  (fibonacci, time). Sums are not bit-identical: the point path takes dot products over
  each window where the batch runs a recursive filter (EMAs) or moment sums (variances).
  Worst seen here: ``bb_squeeze_20`` 1.4e-10 (the batch's variance from moments of prices
  shifted by the first bar of its history; main's online path differs from the batch by
  the same 1.4e-10), ``trix_15`` and ``macd_hist`` 5e-11 (differences of nearly equal
  EMAs; main: < 3e-11).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F
from bqx.features import _ops as O
from bqx.features.panel import Panel

GAP_PAIR = "EURUSD"


@pytest.fixture(scope="module")
def gap_panel(bars_small: pd.DataFrame) -> Panel:
    """bars_small with 20 EURUSD bars removed (longer than max_ffill: NaN rows) at a known
    place, so windows that reach over the gap are NaN and later ones are not."""
    ts = np.sort(bars_small.ts.unique())
    t0, t1 = ts[2500], ts[2519]
    drop = (bars_small.pair == GAP_PAIR) & bars_small.ts.between(t0, t1)
    return Panel.from_bars(bars_small[~drop].reset_index(drop=True))


def _rows(panel: Panel) -> list[int]:
    """Bars to test: the first bars, around the gap, around the weekend boundary (if any),
    random ones."""
    n = len(panel)
    d = np.diff(panel.ts)
    jumps = [int(i) + 1 for i in np.flatnonzero(d > 2 * np.median(d))]
    rng = np.random.default_rng(4)
    near = [0, 1, 3, 70, 2520, 2521, 2530, 2600, 2760, 2900]
    for j in jumps[:2]:
        near += [j - 1, j, j + 1, j + 60]
    return sorted({r for r in [*near, *rng.integers(0, n, 8)] if 0 <= r < n})


def test_point_primitives_equal_the_series():
    rng = np.random.default_rng(0)
    x = 1.1 + np.cumsum(rng.normal(0, 1e-4, 900))
    x[[300, 301, 302, 650]] = np.nan
    pos = np.array([0, 5, 13, 14, 40, 299, 305, 330, 500, 660, 899])
    run = np.arange(400, 600)  # a long run of rows: the filter path of ema_pt
    for w in (1, 3, 14, 55):
        for pt, ser in (
            (O.max_pt, O.rolling_max),
            (O.min_pt, O.rolling_min),
            (O.bars_since_max_pt, O.bars_since_max),
            (O.bars_since_min_pt, O.bars_since_min),
        ):
            assert np.array_equal(pt(x, w, pos), ser(x, w)[pos], equal_nan=True), (pt, w)
        for pt, ser in (
            (O.sum_pt, O.rolling_sum),
            (O.mean_pt, O.rolling_mean),
            (O.std_pt, O.rolling_std),
        ):
            np.testing.assert_allclose(pt(x, w, pos), ser(x, w)[pos], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            O.corr_pt(x, np.roll(x, 1), w + 2, pos),
            O.rolling_corr(x, np.roll(x, 1), w + 2)[pos],
            rtol=1e-9,
            atol=1e-12,
        )
    for alpha in (0.5, 1 / 14, 2 / 101):
        e = O.ema(x, alpha)
        np.testing.assert_allclose(O.ema_pt(x, alpha, pos), e[pos], rtol=1e-13)
        np.testing.assert_allclose(O.ema_pt(x, alpha, run), e[run], rtol=1e-13)
        assert np.array_equal(np.isnan(O.ema_pt(x, alpha, pos)), np.isnan(e[pos]))


def test_rows_before_lists_exactly_the_rows_the_windows_read():
    for pos, w in (([100, 40, 39, 0], 3), ([5], 10), ([300, 240, 180, 239], 70), ([2], 5)):
        want = sorted({r for p in pos for r in range(p - w + 1, p + 1) if r >= 0})
        assert O.rows_before(np.array(pos), w).tolist() == want


def test_subset_equals_full_online_bit_for_bit_near_gaps_and_boundaries(gap_panel):
    cols = F.columns()
    cat = F.catalog()
    rng = np.random.default_rng(7)
    # one spec of every family alone, lagged and causal columns, random sets of many sizes
    singles = list(cat.groupby("family")["name"].first())
    subsets = [
        singles,
        *[list(rng.choice(cols, k, replace=False)) for k in (1, 5, 70, 300)],
        [c for c in cols if c.endswith(("_lag61", "_lag240"))][::7],
    ]
    ts = gap_panel.timestamps()
    for r in _rows(gap_panel):
        pair = GAP_PAIR if r % 2 == 0 else "AUDNZD"
        try:
            full, a1 = F.at_array(gap_panel, pair, ts[r])
        except Exception:  # no bar of the pair at or before the first rows
            continue
        for only in subsets:
            ix = [cols.index(c) for c in only]
            sub, a2 = F.at_array(gap_panel, pair, ts[r], only=only)
            assert a1 == a2
            assert np.array_equal(sub[ix], full[ix], equal_nan=True), (pair, ts[r], len(only))
        # each single-family spec alone equals its value in the full call
        for c in singles:
            one, _ = F.at_array(gap_panel, pair, ts[r], only=[c])
            k = cols.index(c)
            assert np.array_equal(one[k : k + 1], full[k : k + 1], equal_nan=True), c


def test_online_point_path_equals_the_batch_build(gap_panel):
    cat = F.catalog().set_index("name")
    exact = cat.index[cat.family.isin(["fibonacci", "time"])]
    for pair in (GAP_PAIR, "USDJPY"):
        batch = F.build(gap_panel, pair)
        scale = batch.abs().median()
        scale = scale.where(scale > 0, batch.abs().max()).where(lambda s: s > 0, 1.0)
        rows = [r for r in _rows(gap_panel) if r < len(gap_panel)]
        pick = batch.index.searchsorted(gap_panel.timestamps()[rows], side="right") - 1
        for i in sorted({int(i) for i in pick if i >= 0}):
            t = batch.index[i]
            o = pd.Series(F.at_array(gap_panel, pair, t)[0], index=batch.columns)
            b = batch.iloc[i]
            nan_b, nan_o = b.isna(), o.isna()
            assert (nan_b == nan_o).all(), (t, list(b.index[nan_b != nan_o][:5]))
            rel = ((o - b).abs() / scale)[~nan_b]
            assert rel.max() <= 5e-10 if len(rel) else True, (t, rel.idxmax(), rel.max())
            assert np.array_equal(o[exact], b[exact], equal_nan=True), t


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def test_shortcuts_equal_the_numpy_expressions_they_replace_bit_for_bit(gap_panel):
    """The online shortcuts of issue 15 item 4 (cheaper calls, same arithmetic) against the
    expressions they replace, bit for bit: row mean/std against ndarray.mean/std, windows of
    evenly spaced rows against the index gather, the batched filter of several series
    against ema_pt one by one, rows_before against the coverage count, and the point paths
    of bqx, time, fibonacci and currency (any subset of columns) against their compute()."""
    rng = np.random.default_rng(7)
    x = 1.1 + np.cumsum(rng.normal(0, 1e-4, 1500))
    x[[40, 41, 900]] = np.nan
    for shape in ((1, 7), (5, 60), (6, 75), (3, 720)):
        a = rng.normal(0.0, 1e-3, shape)
        a[0, 0] = np.nan if shape[1] > 60 else a[0, 0]
        for v in (a, a[:, ::-1], a[:, : shape[1] // 2 + 1]):
            assert (_bits(O.row_mean(v)) == _bits(v.mean(axis=1))).all()
            assert (_bits(O.row_std(v)) == _bits(v.std(axis=1))).all()
    for w in (1, 14, 280, 600):
        for pos in ([1400], [1400, 1340, 1280, 1220, 1160], [700, 760, 820], [1499, 1498]):
            p = np.array(pos)
            got = O.windows_at(x, w, p)
            want = x[p[:, None] + np.arange(1 - w, 1)]
            assert got.flags.c_contiguous and (_bits(got) == _bits(want)).all()
            assert (_bits(O.windows_at(x[3:], w, p - 3)) == _bits(want)).all()  # a view
    ys = [x, x * 1.5, np.abs(np.diff(x, prepend=np.nan))]
    for pos in (np.arange(700, 990), np.arange(300, 320), np.arange(10, 200)):
        many = O.ema_pt_many(ys, 1 / 14, pos)
        for y, m in zip(ys, many, strict=True):
            assert (_bits(m) == _bits(O.ema_pt(y, 1 / 14, pos))).all()
    for pos in ([5], [0, 3, 2], [100, 40, 41, 300], list(range(0, 400, 60))):
        p = np.array(pos)
        lo = max(int(p.min()) - 13, 0)
        cover = np.zeros(int(p.max()) - lo + 2, dtype=np.int64)
        np.add.at(cover, np.maximum(p - 13 - lo, 0), 1)
        np.add.at(cover, np.maximum(p + 1 - lo, 0), -1)
        assert (
            O.rows_before(p, 14).tolist()
            == (lo + np.flatnonzero(np.cumsum(cover[:-1]) > 0)).tolist()
        )

    from bqx.features.context import Ctx
    from bqx.features.families import FAMILIES

    fams = {f.name: f for f in FAMILIES}
    j = gap_panel.col(GAP_PAIR)
    for p_end in (800, 2530, len(gap_panel) - 1):
        for name in ("bqx", "time", "fibonacci", "currency"):
            fam = fams[name]
            need = max(s.lookback for s in fam.specs) + (300 if fam.lagged else 0)
            c0 = max(0, p_end - need)
            ctx_ref = Ctx(gap_panel.slice_rows(c0, p_end + 1), GAP_PAIR)
            pos = (p_end - c0) - (
                np.array([0, 60, 120, 180, 240, 61]) if fam.lagged else np.array([0])
            )
            pos = pos[pos >= 0]
            with np.errstate(all="ignore"):
                want = fam.compute(ctx_ref, pos)
                for idx in (
                    range(len(fam.specs)),
                    sorted(rng.choice(len(fam.specs), 3, replace=False)),
                ):
                    ctx = Ctx.window(gap_panel, GAP_PAIR, j, c0, p_end + 1)
                    got = fam.compute_online(ctx, pos, list(idx))
                    assert (_bits(got) == _bits(want[:, list(idx)])).all(), (name, p_end, idx)


def test_fibonacci_one_row_path_equals_the_batch_bit_for_bit(gap_panel):
    """The online call of the fibonacci family (one row, full window) works on Python
    floats: equal to compute() bit for bit at every row of a stretch that holds the gap
    (NaN windows), a flat run (zero swing range: NaN position), a close exactly on a level
    (p = 0.5: a zero distance, the zone boundary) and ordinary bars."""
    import copy

    from bqx.features.context import Ctx
    from bqx.features.families import fibonacci

    panel = copy.deepcopy(gap_panel)
    panel._cache.clear()  # the per-panel column copies are of the bars changed below
    panel._lc = None
    j = panel.col(GAP_PAIR)
    for f in ("open", "high", "low", "close"):
        getattr(panel, f)[1000:1130, j] = 1.1  # flat: H = L over the 120-bar swing
    panel.high[1300, j], panel.low[1310, j] = 1.5, 1.0  # the 120-bar swing of row 1330
    panel.close[1330, j] = 1.25  # exactly half way: fib_pos 0.5, on the 50 % level
    rows = np.array([*range(1120, 1140), 1330, *range(2495, 2530, 2), *range(2990, 3010)])
    rows = rows[rows < len(panel)]
    with np.errstate(all="ignore"):
        want = fibonacci.compute(Ctx(panel, GAP_PAIR), rows)
        for r, w_row in zip(rows, want, strict=True):
            c0 = int(r) - 479
            ctx = Ctx.window(panel, GAP_PAIR, j, c0, int(r) + 1)
            got = fibonacci.compute_online(ctx, np.array([479]), list(range(12)))
            assert (_bits(got[0]) == _bits(w_row)).all(), int(r)
    assert want[rows.tolist().index(1330), 0] == 0.5
    assert np.isnan(want[rows.tolist().index(1129), 0])


def test_time_one_row_path_equals_the_batch_bit_for_bit():
    """The online time features at one row (Python ints and floats, the zone offset cached
    per UTC hour) against compute() (pandas' time-zone conversion over many rows), bit for
    bit: random minutes over 2000-2035 and every minute around DST changes of the three
    session zones."""
    from types import SimpleNamespace

    from bqx.features.families import timefeat

    rng = np.random.default_rng(11)
    minute = 60_000_000_000
    lo, hi = pd.Timestamp("2000-01-01").value, pd.Timestamp("2035-01-01").value
    ts = [rng.integers(lo, hi, 1500) // minute * minute]
    for d in ("2024-03-10 06:00", "2024-11-03 05:00", "2024-03-31 00:30", "2024-10-27 00:00"):
        t0 = pd.Timestamp(d).value
        ts.append(t0 + minute * np.arange(-90, 90))
    ts_all = np.concatenate(ts).astype(np.int64)
    ctx = SimpleNamespace(ts=ts_all)
    want = timefeat.compute(ctx, np.arange(len(ts_all)))  # type: ignore[arg-type]
    idx = list(range(8))
    for i, t in enumerate(ts_all.tolist()):
        got = timefeat._one_row(t, idx)
        assert (_bits(got[0]) == _bits(want[i])).all(), pd.Timestamp(t)
