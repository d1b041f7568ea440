"""Issue 18 item 7: backtest prediction metrics use the features pipeline's target."""

from __future__ import annotations

import numpy as np

from bqx.backtest.metrics import realized_targets
from bqx.data.simulator import generate
from bqx.features.pipeline import target_series


def test_realized_targets_is_the_pipeline_target_across_gaps() -> None:
    bars = generate(days=2, pairs=["EURUSD", "USDJPY"], seed=5).bars
    # a 3-bar hole (forward-filled on the grid) and a 20-bar hole (a gap in trading time)
    drop = bars.groupby("pair").cumcount().isin([*range(400, 403), *range(900, 920)])
    bars = bars[~drop].reset_index(drop=True)
    got = realized_targets(bars)
    for p in ("EURUSD", "USDJPY"):
        want = target_series(bars, p)
        g = got[got["pair"] == p].set_index("ts")["y_true"]
        assert g.index.equals(want.index)
        np.testing.assert_array_equal(g.to_numpy(), want.to_numpy())
        # the bars around the holes are where a raw-order recomputation would differ
        assert np.isfinite(g.to_numpy()).sum() > 1000
