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
