"""Issue 18 item 4: a historical request for time T uses bars that had *closed* by T (bars are
stamped with their open time); the live path (no timestamp) is unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.config import load_settings
from bqx.data.simulator import generate
from bqx.data.store import open_store
from bqx.serving.service import PredictionService


def _features(s, t):
    svc = PredictionService(s, live=False)
    try:
        return svc.features("EURUSD", t)
    finally:
        svc.close()


def test_request_at_t_uses_no_bar_closing_after_t() -> None:
    s = load_settings()
    bars = generate(days=2, pairs=["EURUSD", "USDJPY"], seed=4).bars
    st = open_store(settings=s)
    try:
        st.upsert(bars)
    finally:
        st.close()
    T = pd.Timestamp("2024-01-02T14:00:00Z")
    one = pd.Timedelta(minutes=1)
    fv = _features(s, T)
    assert fv.asof == T - one  # the 14:00 bar closes at 14:01, after T
    assert _features(s, T + pd.Timedelta(seconds=59)).asof == T - one
    assert _features(s, T + one).asof == T  # closed at 14:01
    # changing the bar that opens at T (it closes after T) must not change the answer at T
    eu = bars[(bars["pair"] == "EURUSD") & (bars["ts"] == T)].copy()
    eu[["close", "high"]] = eu[["close", "high"]].to_numpy() * 1.01
    st = open_store(settings=s)
    try:
        st.upsert(eu)
    finally:
        st.close()
    assert _features(s, T).hash == fv.hash
    assert _features(s, T + one).asof == T
    # live (no timestamp): still the newest bar
    assert _features(s, None).asof == bars["ts"].max()
    assert np.isfinite(fv.values).any()
