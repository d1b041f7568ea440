"""Batch (build) and online (at) agree: >= 200 random bars over several pairs, each value
within 1e-9 of the column's scale, NaN exactly where the batch has NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx import features as F

PAIRS = ["EURUSD", "USDJPY", "GBPNZD", "AUDCAD"]


@pytest.mark.parametrize("pair", PAIRS)
def test_at_equals_build_row(panel_medium, pair):
    batch = F.build(panel_medium, pair)
    scale = batch.abs().median()
    scale = scale.where(scale > 0, batch.abs().max()).where(lambda s: s > 0, 1.0).to_numpy()
    rng = np.random.default_rng(PAIRS.index(pair))
    # 50 bars per pair, including some with short history (NaN-heavy rows)
    idx = np.concatenate([rng.integers(0, 1500, 10), rng.integers(1500, len(batch), 40)])
    worst = 0.0
    for i in idx:
        t = batch.index[i]
        online = F.at(panel_medium, pair, t)
        assert online.name == t
        b = batch.iloc[i].to_numpy()
        o = online.to_numpy()
        nan_b, nan_o = np.isnan(b), np.isnan(o)
        mism = np.flatnonzero(nan_b != nan_o)
        assert not len(mism), f"NaN mismatch at {t}: {[batch.columns[j] for j in mism[:5]]}"
        rel = np.abs(o[~nan_b] - b[~nan_b]) / scale[~nan_b]
        if len(rel):
            worst = max(worst, float(rel.max()))
            bad = np.flatnonzero(rel > 1e-9)
            assert not len(bad), f"{t}: {[batch.columns[~nan_b][j] for j in bad[:5]]}"
    assert worst < 1e-9


def test_at_from_a_long_frame_and_between_bars(bars_small):
    t = pd.Timestamp("2024-03-06 12:00:30", tz="UTC")  # between two bars
    s = F.at(bars_small, "EURGBP", t)
    assert s.name == pd.Timestamp("2024-03-06 12:00", tz="UTC")
    row = F.build(bars_small, "EURGBP", start=s.name, end=s.name).iloc[0]
    np.testing.assert_allclose(s.to_numpy(), row.to_numpy(), rtol=1e-9, atol=1e-15, equal_nan=True)


def test_online_window_is_enough(bars_medium):
    """at() on only the last lookback() rows equals at() on the whole history."""
    from bqx.features.panel import Panel

    panel = Panel.from_bars(bars_medium)
    p = len(panel) - 1
    need = F.lookback() + panel.max_ffill + 1
    t = panel.timestamps()[p]
    cut = bars_medium[bars_medium.ts > panel.timestamps()[p - need]]
    a = F.at(panel, "NZDJPY", t).to_numpy()
    b = F.at(cut, "NZDJPY", t).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14, equal_nan=True)


def _same(a: pd.Series, b: pd.Series) -> bool:
    return a.name == b.name and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)


def test_at_on_a_frame_equals_at_on_the_whole_panel_bit_for_bit(bars_medium, panel_medium):
    """at(frame) pivots only a window of the frame (the fast path); the result must be
    identical to pivoting everything, at random bars (weekend edges and the first bars of
    the data included) and for any pair."""
    ts = panel_medium.timestamps()
    rng = np.random.default_rng(3)
    picks = [*rng.integers(0, len(ts), 30), 0, 5, 1400, len(ts) - 1]
    for i, pair in zip(picks, rng.choice(PAIRS, len(picks)), strict=True):
        t = ts[i] + pd.Timedelta(seconds=int(rng.integers(0, 60)))
        assert _same(F.at(bars_medium, pair, t), F.at(panel_medium, pair, t)), (pair, t)


def test_at_on_a_frame_widens_or_falls_back_when_the_window_is_short(bars_medium):
    """A pair with a long gap before t (window widened) and a pair that stopped trading
    days before t (window would drop it: whole frame used) give the same as the full Panel."""
    from bqx.features.panel import Panel

    t = pd.Timestamp("2024-03-12 15:00", tz="UTC")
    gap = (bars_medium.pair == "EURUSD") & bars_medium.ts.between(
        t - pd.Timedelta(hours=30), t - pd.Timedelta(minutes=5)
    )
    stopped = (bars_medium.pair == "CHFJPY") & (bars_medium.ts > t - pd.Timedelta(days=3))
    frame = bars_medium[~gap & ~stopped].reset_index(drop=True)
    panel = Panel.from_bars(frame)
    for pair in ("EURUSD", "CHFJPY", "GBPNZD"):
        assert _same(F.at(frame, pair, t), F.at(panel, pair, t)), pair
    # bars after t change nothing (the window ends at t)
    later = frame.ts > t
    moved = frame.assign(close=np.where(later, frame.close * 1.01, frame.close))
    moved["high"] = np.maximum(moved["high"], moved["close"])
    assert _same(F.at(moved, "GBPNZD", t), F.at(frame, "GBPNZD", t))


def test_at_the_very_first_bar_is_all_nan_history_not_a_crash(bars_small):
    """At the first bar there is no history: features that need it are NaN (this used to
    raise IndexError, and in batch a negative index wrapped to the end of the series)."""
    first = bars_small.ts.min()
    s = F.at(bars_small, "EURUSD", first)
    assert s.name == first and s.isna().mean() > 0.9
    row = F.build(bars_small, "EURUSD").iloc[0]
    assert np.array_equal(s.to_numpy(), row.to_numpy(), equal_nan=True)


def test_at_subset_equals_the_full_online_call_bit_for_bit(panel_medium):
    """at_array(only=...) computes just the columns a model uses (issue 15 item 4): every
    computed value equals the full call's bit for bit, the rest are NaN; subsets span
    lagged and causal columns, a family's single spec, and whole families."""
    cols = F.columns()
    rng = np.random.default_rng(15)
    subsets = [
        list(rng.choice(cols, 70, replace=False)),
        ["rsi_14_lag240", "macd_hist", "cmo_14"],
        [c for c in cols if c.startswith(("w60_", "agg_")) and c.endswith("_lag61")][:3],
        cols,
    ]
    ts = panel_medium.timestamps()
    for k, only in enumerate(subsets):
        ix = [cols.index(c) for c in only]
        rest = np.setdiff1d(np.arange(len(cols)), ix)
        for i in [*rng.integers(0, len(ts), 6), 3, len(ts) - 1]:
            pair = PAIRS[int(i) % len(PAIRS)]
            full, a1 = F.at_array(panel_medium, pair, ts[i])
            sub, a2 = F.at_array(panel_medium, pair, ts[i], only=only)
            assert a1 == a2
            assert np.array_equal(sub[ix], full[ix], equal_nan=True), (k, pair, ts[i])
            assert np.isnan(sub[rest]).all()


def test_at_subset_rejects_unknown_columns(panel_medium):
    with pytest.raises(ValueError, match="unknown feature columns"):
        F.at_array(panel_medium, "EURUSD", only=["no_such_feature"])


def test_at_subset_per_panel_intermediates_do_not_depend_on_the_call_order(panel_medium):
    """The ``only=`` path takes row-local intermediates (returns, true range, currency
    returns, ...) once per panel, from the first row its first call reads (then from row 0
    when a later call reads earlier rows): whatever the order of the calls, every value
    equals the full online call's (per-window intermediates) bit for bit."""
    cols = F.columns()
    ts = panel_medium.timestamps()
    n = len(ts)
    for pair, bars in (("USDJPY", [n - 1, 1500, n - 1, 3]), ("GBPNZD", [900, n - 2, 40])):
        fresh = panel_medium.slice_rows(0, n)  # the same rows, no per-panel caches
        assert not fresh._cache
        for i in bars:
            full, _ = F.at_array(panel_medium, pair, ts[i])
            sub, _ = F.at_array(fresh, pair, ts[i], only=cols)
            assert np.array_equal(sub, full, equal_nan=True), (pair, ts[i])


def test_at_subset_per_panel_caches_do_not_keep_the_panel_alive(panel_medium):
    """The per-panel intermediates hold arrays only (no context referring back to the
    panel): a panel is freed by reference counting as soon as it is dropped (a server builds
    one per new bar), not at the next cyclic garbage collection."""
    import gc
    import weakref

    ts = panel_medium.timestamps()
    fresh = panel_medium.slice_rows(0, len(ts))
    for i in (len(ts) - 1, 1500):  # the second call reads earlier rows: caches rebuilt
        F.at_array(fresh, "AUDCAD", ts[i], only=F.columns())
    assert fresh._cache
    ref = weakref.ref(fresh)
    gc.disable()
    try:
        del fresh
        assert ref() is None
    finally:
        gc.enable()
