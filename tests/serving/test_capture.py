"""Served model inputs are captured off the request path (drift monitoring)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from bqx.features import columns
from bqx.monitoring.drift import MARKET_VOL
from bqx.serving.service import PredictionService
from bqx.state import CaptureWriter, StateDB, open_state
from bqx.state.captures import capture_row


def test_service_captures_selected_inputs(settings):
    svc = PredictionService(settings)
    svc.start(prewarm=False)
    ts = ["2024-01-04 10:00", "2024-01-04 11:30", "2024-01-05 09:15"]
    preds = [svc.predict("EURUSD", t) for t in ts]
    art = svc.model("EURUSD")
    fvs = [svc.features("EURUSD", pd.Timestamp(t, tz="UTC")) for t in ts]
    svc.close()  # flushes the writers
    cap = open_state(settings).read_captures("EURUSD").set_index("decision_id")
    assert set(cap.index) == {p.decision_id for p in preds}
    pos = {c: i for i, c in enumerate(columns())}
    idx = [pos[f] for f in art.features]
    for p, fv in zip(preds, fvs, strict=True):
        row = cap.loc[p.decision_id]
        assert row["model_version"] == p.model_version
        np.testing.assert_array_equal(row[list(art.features)].to_numpy(float), fv.values[idx])
        # the market column (realised volatility) rides along: serving computes it for the
        # intervals anyway, and drift tests its level
        assert MARKET_VOL in art.needed_columns
        assert row[MARKET_VOL] == fv.values[pos[MARKET_VOL]] and row[MARKET_VOL] > 0


def test_capture_off_and_sampling_and_purge(settings, tmp_path):
    settings.monitor.capture_rate = 0.0
    svc = PredictionService(settings)
    svc.start(prewarm=False)
    svc.predict("EURUSD", "2024-01-04 10:00")
    svc.close()
    assert len(open_state(settings).read_captures()) == 0

    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")
    w = CaptureWriter(st, rate=0.3)
    ids = [str(uuid.uuid4()) for _ in range(2000)]
    for i in ids:
        w.submit(
            capture_row(
                decision_id=i,
                pair="EURUSD",
                asof_ts=None,
                model_version="1",
                names=["a"],
                values=[1.0],
            )
        )
    w.close()
    n = len(st.read_captures())
    assert 450 < n < 750 and w.written == n and w.sampled_out == 2000 - n
    assert st.purge_captures(pd.Timestamp.now(tz="UTC") + pd.Timedelta("1s")) == n
