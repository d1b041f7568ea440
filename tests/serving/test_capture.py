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


def test_capture_writer_hand_off_is_a_deque_append_and_flush_waits(tmp_path):
    """A submit only appends (it never wakes the writer); the writer writes what is queued
    on its own every ``interval_s``; ``flush`` wakes it and returns once everything
    submitted before it is written; a full queue drops and counts."""
    import time

    st = StateDB(f"sqlite:///{tmp_path / 's.db'}")

    def row(i: int) -> dict:
        return {"decision_id": f"d{i}", "pair": "EURUSD", "asof_ts": None, "model_version": "1",
                "names": ["a", "b"], "values": np.array([float(i), np.inf])}  # fmt: skip

    w = CaptureWriter(st, interval_s=0.05)
    for i in range(30):
        w.submit(row(i))
    assert not w._wake.is_set()  # requests never wake the writer
    deadline = time.monotonic() + 10
    while w.written < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.written == 30  # written by the periodic wake, without a flush
    w.close()

    slow = CaptureWriter(st, interval_s=60.0, max_queue=50)  # asleep for the whole test
    for i in range(100, 160):
        slow.submit(row(i))
    assert slow.dropped == 10 and slow.status()["queued"] == 50
    t0 = time.monotonic()
    assert slow.flush(timeout=10)
    assert time.monotonic() - t0 < 5 and slow.written == 50
    cap = st.read_captures().set_index("decision_id")
    assert len(cap) == 80 and cap.loc["d101", "a"] == 101.0 and np.isnan(cap.loc["d101", "b"])
    slow.close()
    assert not slow._thread.is_alive()
