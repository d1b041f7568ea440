"""Issue 18 item 1: walk-forward trades bars whose future target is unknown (before a gap,
at the end of data) and leaves them out of the prediction metrics only."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest

from bqx.backtest.metrics import prediction_metrics
from bqx.backtest.walkforward import WalkForwardConfig, ensure_features, walk_forward_predictions
from bqx.config import load_settings
from bqx.data.simulator import generate
from bqx.data.store import open_store


def test_rows_with_unknown_target_are_predicted(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5-minute bars keep it small: January trains, February is the test month
    monkeypatch.setenv("BQX_BAR_INTERVAL", "5min")
    monkeypatch.setenv("BQX_TRAIN__SELECTION_ROWS", "2000")
    s = load_settings()
    bars = generate(days=58, pairs="EURUSD", seed=2, interval=timedelta(minutes=5)).bars
    # a 2-hour hole in open trading time on Wednesday 2024-02-14: the 60 bars before it have
    # no target (their horizon runs into the hole)
    hole = (bars["ts"] >= "2024-02-14 10:00Z") & (bars["ts"] < "2024-02-14 12:00Z")
    bars = bars[~hole].reset_index(drop=True)
    st = open_store(settings=s)
    try:
        st.upsert(bars)
    finally:
        st.close()
    ensure_features(["EURUSD"], s)
    cfg = WalkForwardConfig(train_months=1, test_months=1, windows=1, model="ridge")
    pred, info = walk_forward_predictions(["EURUSD"], s, cfg, jobs=1)
    assert not info["errors"]
    ts = pred["ts"]
    # the end of data: the last bar is traded although its target is unknown
    assert ts.max() == bars["ts"].max()
    # before the hole: the bar just before it is traded, its y_true is NaN
    before = ts[ts < "2024-02-14 10:00Z"].max()
    assert before == bars.loc[bars["ts"] < "2024-02-14 10:00Z", "ts"].max()
    unknown = ~np.isfinite(pred["y_true"].to_numpy())
    assert unknown.sum() >= 2 * s.horizon
    # rows whose target is unknown but whose inputs are valid are predicted and traded
    finite = np.isfinite(pred["prediction"].to_numpy())
    assert finite[unknown].all()
    # the only rows without a forecast are those whose feature windows span the hole (too
    # many missing inputs: issue 10's serve.min_valid_features, the same rule as serving)
    refused = ts[~finite]
    # within the candidates' longest look-back after the hole: the longest window or lag a
    # candidate's name states (720 bars) plus the longest lag of the lagged copies (LAGS);
    # which of them reach that far depends on the features the window selected (with the
    # LightGBM selection engine here: 748 bars, Monday 02:20, past the weekend)
    from bqx.features import columns
    from bqx.features.pipeline import LAGS

    reach = max(int(x) for n in columns() for x in re.findall(r"\d+", n)) + max(LAGS)
    after = bars.loc[bars["ts"] >= "2024-02-14 12:00Z", "ts"].reset_index(drop=True)
    assert len(refused) and (refused >= "2024-02-14 12:00Z").all()
    assert (refused <= after.iloc[reach]).all()
    # metrics see only the rows with a known target
    m = prediction_metrics(pred["y_true"], pred["prediction"])
    assert m["n"] == int((~unknown & finite).sum())
