"""Live quality: an R² drop is detected when the simulator's signal switches off."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.data.simulator import generate, oracle_prediction, realized_target
from bqx.monitoring.quality import quality_report
from bqx.state import StateDB


def _decisions(days, seed, strength, start, version):
    bars = generate(days=days, pairs="EURUSD", seed=seed, signal_strength=strength, start=start)
    b = bars.bars
    close = b["close"].to_numpy(float)
    yhat = oracle_prediction(close, 0.3)  # the model keeps its learned signal
    y = realized_target(close, 60)
    ts = pd.DatetimeIndex(pd.to_datetime(b["ts"], utc=True))
    rows = [
        {"pair": "EURUSD", "asof_ts": t, "horizon": 60, "prediction": p, "model_version": version}
        for t, p in zip(ts, yhat, strict=True)
    ]
    return rows, y, ts


def test_r2_drop_detected_when_signal_switches_off(tmp_path):
    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    on_rows, y_on, ts_on = _decisions(2, 1, 0.3, "2024-03-05", "1")
    off_rows, y_off, ts_off = _decisions(2, 2, 0.0, "2024-03-07", "1")
    ids = st.log_decisions(on_rows + off_rows)
    st.set_realized(
        [(i, v) for i, v in zip(ids, np.r_[y_on, y_off], strict=True) if np.isfinite(v)]
    )
    ref = {"1": {"r2": 0.3}}
    before = quality_report(st, "EURUSD", reference=ref, windows=["1D"], now=ts_on[-1])
    q1 = before["versions"]["1"]["1D"]
    assert q1["alert"] is None and q1["metrics"]["r2"]["value"] > 0.05
    after = quality_report(st, "EURUSD", reference=ref, windows=["1D"], now=ts_off[-1])
    q2 = after["versions"]["1"]["1D"]
    assert q2["alert"]["severity"] == "critical"
    assert "statistically distinguishable" in q2["alert"]["text"]
    assert q2["metrics"]["r2"]["n_eff"] < q2["n"]  # overlapping targets
    empty = quality_report(st, "GBPUSD", reference=ref)
    assert empty["versions"] == {}
