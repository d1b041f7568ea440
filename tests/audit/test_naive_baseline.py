"""Issue 18 item 5: the "last known target" baseline uses y(t - h), which is known at t."""

from __future__ import annotations

import numpy as np

from bqx.data.simulator import generate
from bqx.features.pipeline import target_series
from bqx.training.metrics import baselines, regression_metrics


def test_target_h_bars_back_is_known_at_t_and_is_the_baseline() -> None:
    bars = generate(days=2, pairs="EURUSD", seed=3).bars
    y = target_series(bars, "EURUSD").to_numpy()
    h = 60
    t = 500
    # the target at t - h recomputed from bars <= t only: identical, so it is known at t
    cut = bars[bars["ts"] <= target_series(bars, "EURUSD").index[t]]
    y_cut = target_series(cut, "EURUSD").to_numpy()
    assert np.isfinite(y_cut[t - h]) and y_cut[t - h] == y[t - h]
    assert np.isnan(y_cut[t - h + 1])  # one bar later is not known yet
    # so the naive baseline forecasts y(t) by y(t - h), not y(t - h - 1)
    yy = y[np.isfinite(y)]
    base = baselines(yy)
    assert set(base) == {"zero", f"lag{h}"}
    want = regression_metrics(yy[h:], yy[:-h])
    assert base[f"lag{h}"]["r2"] == want["r2"] and base[f"lag{h}"]["n"] == want["n"]
    assert "lag30" in baselines(yy, lag=30)
